package par

import (
	"runtime"
	"sync/atomic"
	"testing"
)

func TestRangesCoverEachIndexOnce(t *testing.T) {
	for _, c := range []struct{ n, minPer, procs int }{
		{0, 1, 4}, {1, 1, 4}, {7, 1, 4}, {1000, 1, 3}, {1000, 600, 4}, {1000, 10, 1}, {5, 0, 8},
	} {
		old := runtime.GOMAXPROCS(c.procs)
		seen := make([]int32, c.n)
		var calls atomic.Int32
		Ranges(c.n, c.minPer, func(lo, hi int) {
			calls.Add(1)
			if lo >= hi {
				t.Errorf("n=%d: empty range [%d, %d)", c.n, lo, hi)
			}
			for i := lo; i < hi; i++ {
				atomic.AddInt32(&seen[i], 1)
			}
		})
		runtime.GOMAXPROCS(old)
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("n=%d minPer=%d procs=%d: index %d covered %d times", c.n, c.minPer, c.procs, i, s)
			}
		}
		if want := min(c.procs, c.n/max(c.minPer, 1)); want > 1 && int(calls.Load()) > want {
			t.Errorf("n=%d minPer=%d procs=%d: %d calls, want at most %d", c.n, c.minPer, c.procs, calls.Load(), want)
		}
		if c.n > 0 && c.n/max(c.minPer, 1) < 2 && calls.Load() != 1 {
			t.Errorf("n=%d minPer=%d: %d calls, want one for a small loop", c.n, c.minPer, calls.Load())
		}
	}
}
