// Package par splits loops over the host's cores and runs ordered
// pipelines of independent work items on them.
package par

import (
	"runtime"
	"sync"
)

// Ranges calls fn on contiguous chunks [lo, hi) that cover 0..n-1, one per
// worker of GOMAXPROCS, and returns when all are done. With fewer than
// minPer items per worker it calls fn(0, n) on the calling goroutine:
// small loops are not worth the goroutines. fn must only write what its
// range owns.
func Ranges(n, minPer int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(minPer, 1))
	if workers <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}
