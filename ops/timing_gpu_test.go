package ops

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/ops/ref"
)

// WarmUp spends the device time asked for in rounds of doubling size, and
// leaves the engine's timed state and held timings as it found them;
// TimeCalls returns the asked repeats, each with the call's dispatches.
func TestWarmUpAndTimeCalls(t *testing.T) {
	g := gpuEngine(t)
	alloc := allocator(t, g)
	x, y := alloc(1000), alloc(1000)
	if err := g.Fill(x, 0.5); err != nil {
		t.Fatal(err)
	}
	leaky := func(int) error { return g.LeakyReLU(ref.DefaultSlope, x, y) }
	// Two dispatches per call: TimeCalls groups them.
	both := func(int) error {
		if err := g.LeakyReLU(ref.DefaultSlope, x, y); err != nil {
			return err
		}
		return g.Add(x, y, y)
	}

	for _, timed := range []bool{false, true} {
		if err := g.SetTimed(timed); err != nil {
			t.Fatal(err)
		}
		var held int
		if timed { // a timing the caller holds must survive
			if err := leaky(0); err != nil {
				t.Fatal(err)
			}
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			held = len(g.timings)
		}
		const d = 5 * time.Millisecond
		calls := 0
		rounds, err := g.WarmUp(d, func(i int) error {
			if i != calls {
				t.Errorf("call %d made as %d", calls, i)
			}
			calls++
			return leaky(i)
		})
		if err != nil {
			t.Fatal(err)
		}
		var spent time.Duration
		made := 0
		for r, per := range rounds {
			spent += per * time.Duration(1<<r)
			made += 1 << r
		}
		if made != calls {
			t.Errorf("timed %v: %d rounds of doubling size make %d calls, WarmUp made %d", timed, len(rounds), made, calls)
		}
		if spent < d*9/10 && calls < warmMaxCalls { // the rounds' means are rounded down
			t.Errorf("timed %v: warm-up spent %v of device time in %d calls, want %v", timed, spent, calls, d)
		}
		if g.Timed() != timed || len(g.timings) != held {
			t.Errorf("after WarmUp: timed %v with %d timings, want %v with %d", g.Timed(), len(g.timings), timed, held)
		}

		got, warm, err := g.TimeCalls(time.Millisecond, 3, both)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || len(warm) == 0 {
			t.Fatalf("timed %v: %d calls and %d warm-up rounds, want 3 and some", timed, len(got), len(warm))
		}
		for i, c := range got {
			if len(c) != 2 || !strings.HasPrefix(c[0].Kernel, "elementwise") || c[0].Label != "LeakyReLU" || c[1].Label != "Add" {
				t.Errorf("call %d: timings %+v, want LeakyReLU then Add", i, c)
			}
			for _, tm := range c {
				if tm.Duration <= 0 {
					t.Errorf("call %d: %s took %v", i, tm.Label, tm.Duration)
				}
			}
		}
		if g.Timed() != timed || len(g.timings) != held {
			t.Errorf("after TimeCalls: timed %v with %d timings, want %v with %d", g.Timed(), len(g.timings), timed, held)
		}
	}
	if err := g.SetTimed(false); err != nil {
		t.Fatal(err)
	}

	// Refusals: no repeats, a failing call, calls of different dispatch
	// counts, a warm-up inside a capture.
	if _, _, err := g.TimeCalls(0, 0, leaky); err == nil {
		t.Error("TimeCalls accepted 0 repeats")
	}
	boom := errors.New("boom")
	if _, _, err := g.TimeCalls(0, 2, func(i int) error {
		if i == 2 {
			return boom
		}
		return leaky(i)
	}); !errors.Is(err, boom) {
		t.Errorf("a failing call gave %v", err)
	}
	uneven := func(i int) error {
		if i%2 == 1 {
			return both(i)
		}
		return leaky(i)
	}
	if _, _, err := g.TimeCalls(0, 2, uneven); err == nil {
		t.Error("TimeCalls accepted calls of 1 and 2 dispatches")
	}
	if _, err := g.Capture(func() error { _, err := g.WarmUp(0, leaky); return err }); err == nil {
		t.Error("WarmUp ran inside a capture")
	}
	if g.Timed() {
		t.Error("the refusals left the engine timed")
	}
}
