package vk

import (
	"runtime"
	"sync"
)

// copySegment is the fewest bytes a goroutine of hostCopy copies: below
// it a copy is not worth a goroutine.
const copySegment = 4 << 20

// hostCopy copies src into dst (as the builtin copy) on up to GOMAXPROCS
// goroutines: one core does not reach the memory's bandwidth, and a
// training step at 2×128³ moves 32 MiB of image and labels into staging
// memory while the device waits.
func hostCopy(dst, src []byte) {
	n := min(len(dst), len(src))
	workers := min(runtime.GOMAXPROCS(0), n/copySegment)
	if workers <= 1 {
		copy(dst, src)
		return
	}
	seg := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += seg {
		hi := min(lo+seg, n)
		wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
	}
	wg.Wait()
}
