package ops

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/u2net-vk/u2net/vk"
)

// Measurements start on a warm device. A GPU left idle lowers its clocks
// and raises them only after some time under load, so a few warm-up calls
// of a short operation (a millisecond of work after seconds of idle, while
// the host made the operation's random inputs) leave the measurement to
// whatever the idle clocks give. On an H200 the same operation took 4.4 to
// 5.6 times longer in one process than in another (about the ratio of its
// boost clock to its idle clock) after 20 warm-up calls; WarmUp spends
// device time instead of a count of calls.
const (
	// warmGPU and warmCPU are the device time WarmUp spends by default.
	// A CPU device needs only its pipelines built and its caches filled.
	warmGPU = 200 * time.Millisecond
	warmCPU = 20 * time.Millisecond
	// warmMaxCalls bounds the calls of one warm-up (a call of a few
	// microseconds would otherwise take tens of thousands).
	warmMaxCalls = 1 << 14
	// leadCalls are recorded before the timed calls in their submission
	// and not counted, so that the first timed call does not start the
	// submission.
	leadCalls = 2
)

// WarmTime is the device time a warm-up spends by default: on a GPU long
// enough for its clocks to rise from idle.
func (g *GPU) WarmTime() time.Duration { return tuned(g, warmGPU, warmCPU) }

// WarmUp makes call (i counts the calls from 0) in rounds of doubling size,
// synchronised after each, until the device has spent at least d of its own
// time (GPU timestamps) on them, or warmMaxCalls calls. It returns the mean
// device time per call of each round: a falling sequence shows the clocks
// rising. The engine's timed state and the timings it holds are kept.
func (g *GPU) WarmUp(d time.Duration, call func(i int) error) ([]time.Duration, error) {
	restore, err := g.timedScope()
	if err != nil {
		return nil, err
	}
	rounds, _, err := g.warmUp(d, call)
	if rerr := restore(); err == nil {
		err = rerr
	}
	return rounds, err
}

// TimeCalls warms the device up with call (WarmUp for d), then makes
// repeats more calls back to back in one submission (after leadCalls not
// counted) and returns each of those calls' dispatch timings, with the
// warm-up's rounds. Every call must record the same number of dispatches.
func (g *GPU) TimeCalls(d time.Duration, repeats int, call func(i int) error) (calls [][]vk.Timing, warm []time.Duration, err error) {
	if repeats < 1 {
		return nil, nil, fmt.Errorf("ops.TimeCalls: %d repeats", repeats)
	}
	restore, err := g.timedScope()
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if rerr := restore(); err == nil {
			err = rerr
		}
	}()
	warm, n, err := g.warmUp(d, call)
	if err != nil {
		return nil, warm, err
	}
	for i := 0; i < leadCalls+repeats; i++ {
		if err := call(n + i); err != nil {
			return nil, warm, err
		}
	}
	if err := g.Sync(); err != nil {
		return nil, warm, err
	}
	tm := g.TakeTimings()
	per := len(tm) / (leadCalls + repeats)
	if per == 0 || len(tm)%(leadCalls+repeats) != 0 {
		return nil, warm, fmt.Errorf("ops.TimeCalls: %d dispatches timed in %d calls", len(tm), leadCalls+repeats)
	}
	tm = tm[leadCalls*per:]
	calls = make([][]vk.Timing, repeats)
	for i := range calls {
		calls[i] = tm[i*per : (i+1)*per]
	}
	return calls, warm, nil
}

// CallTimes sums each call's dispatch times (TimeCalls' result).
func CallTimes(calls [][]vk.Timing) []time.Duration {
	ts := make([]time.Duration, len(calls))
	for i, c := range calls {
		for _, t := range c {
			ts[i] += t.Duration
		}
	}
	return ts
}

// medianCallTime returns the median of the calls' summed dispatch times.
func medianCallTime(calls [][]vk.Timing) time.Duration {
	ts := CallTimes(calls)
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// timedScope turns the engine's timestamps on, setting aside the timings
// it holds, and returns the function that puts both back.
func (g *GPU) timedScope() (restore func() error, err error) {
	if g.capturing {
		return nil, errSyncInCapture
	}
	was := g.timed
	if err := g.Sync(); err != nil {
		return nil, err
	}
	kept := g.TakeTimings()
	if !was {
		if err := g.SetTimed(true); err != nil {
			return nil, err
		}
	}
	return func() error {
		err := g.Sync()
		if !was {
			err = errors.Join(err, g.SetTimed(false))
		}
		g.timings = kept
		return err
	}, nil
}

// warmUp is WarmUp on a timed engine; it also returns the calls made.
func (g *GPU) warmUp(d time.Duration, call func(i int) error) (rounds []time.Duration, calls int, err error) {
	var busy time.Duration
	for k := 1; ; k = min(2*k, warmMaxCalls-calls) {
		for j := 0; j < k; j++ {
			if err := call(calls); err != nil {
				return rounds, calls, err
			}
			calls++
		}
		if err := g.Sync(); err != nil {
			return rounds, calls, err
		}
		var round time.Duration
		tm := g.TakeTimings()
		for _, t := range tm {
			round += t.Duration
		}
		rounds = append(rounds, round/time.Duration(k))
		busy += round
		// A call that records no dispatch cannot warm anything.
		if busy >= d || calls >= warmMaxCalls || len(tm) == 0 {
			return rounds, calls, nil
		}
	}
}
