package vk

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"
)

func TestHostCopy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ dst, src int }{
		{0, 0}, {1, 1}, {copySegment - 1, copySegment - 1}, {2*copySegment + 3, 2*copySegment + 3},
		{9*copySegment + 7, 9*copySegment + 7}, {3 * copySegment, 5*copySegment + 1}, {5*copySegment + 1, 3 * copySegment},
	} {
		src := make([]byte, c.src)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		got := bytes.Repeat([]byte{0xAB}, c.dst)
		want := bytes.Repeat([]byte{0xAB}, c.dst)
		hostCopy(got, src)
		copy(want, src)
		if !bytes.Equal(got, want) {
			t.Errorf("dst %d, src %d bytes: hostCopy differs from copy", c.dst, c.src)
		}
	}
}

// BenchmarkHostCopy copies 32 MiB (the logits of two 128³ windows of two
// classes) as a download does into its destination: a new slice each time,
// whose memory the copy touches first, page by page, or the same slice
// again (Net.ForwardInto, predict's buffers that go round).
func BenchmarkHostCopy(b *testing.B) {
	const n = 32 << 20
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(i)
	}
	b.Run("new", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			hostCopy(make([]byte, n), src)
		}
	})
	b.Run("reused", func(b *testing.B) {
		b.SetBytes(n)
		dst := make([]byte, n)
		for b.Loop() {
			hostCopy(dst, src)
		}
	})
}
