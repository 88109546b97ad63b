package bench

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/u2net-vk/u2net/ops"
)

// TuneMargin is how much faster than the engine's own rules a kernel
// choice must make the network to be taken: a share of its time, above
// the spread of the medians of repeated measurements on a GPU (about 1%),
// so that noise does not choose.
const TuneMargin = 0.03

// Tune measures the universal network at set under the engine's own
// kernel rules, then under each value of each kernel choice alone, and
// picks for training steps (their GPU time) and for forward passes the
// values that beat the rules by more than TuneMargin (a value the device
// fails to run is recorded with its error and not picked). Where several
// choices are picked the set is measured together too, and kept only
// where it is no slower than the best of them alone (which is kept
// otherwise): choices can interact. The picks are then measured again,
// after the rules once more, and kept only where they win again. The
// engine's choices are as they were afterwards.
func Tune(g *ops.GPU, set NetSetting, repeats int, log func(string)) (t ops.KernelTuning, err error) {
	was := g.Kernels()
	defer func() {
		if rerr := g.SetKernels(was); err == nil {
			err = rerr
		}
	}()
	return tune(ops.NewKernelTuning(g, ""), func(choices []string) (KernelResult, error) {
		return withKernels(g, &set, repeats, log, choices) // each from the size the last one fitted
	})
}

// tune is Tune with the network measured under some kernel choices by
// measure; t is the tuning to fill. Its setting is the one measured, which
// shrinks where the device cannot hold the one asked for.
func tune(t ops.KernelTuning, measure func(choices []string) (KernelResult, error)) (ops.KernelTuning, error) {
	base, err := measure(nil)
	if err != nil {
		return t, err
	}
	measured := []KernelResult{base}
	for _, c := range ops.KernelChoices() {
		for _, v := range c.Values {
			r, err := measure([]string{c.Name + "=" + v})
			if err != nil {
				// A value the device cannot run is not picked; the others
				// are still measured.
				r = KernelResult{Choice: c.Name + "=" + v, Error: err.Error()}
			}
			measured = append(measured, r)
		}
	}
	singles := measured[1:]
	var confirmed []KernelResult // measured again, in pairs: the rules, then the picks
	step := func(r KernelResult) float64 { return r.StepGPUMS }
	fwd := func(r KernelResult) float64 { return r.ForwardGPUMS }
	for _, obj := range []struct {
		pick *[]string
		time func(KernelResult) float64
	}{{&t.Train, step}, {&t.Predict, fwd}} {
		picks, best := tunePicks(base, singles, obj.time)
		if len(picks) > 1 {
			joined := strings.Join(picks, ",")
			i := slices.IndexFunc(measured, func(r KernelResult) bool { return r.Choice == joined })
			if i < 0 {
				r, err := measure(picks)
				if err != nil {
					r = KernelResult{Choice: joined, Error: err.Error()}
				}
				measured = append(measured, r)
				i = len(measured) - 1
			}
			if measured[i].Error != "" || obj.time(measured[i]) > obj.time(best) {
				picks = []string{best.Choice}
			}
		}
		if len(picks) > 0 {
			// A pick must win again, measured after the rules once more: a
			// single measurement can be lucky.
			joined := strings.Join(picks, ",")
			i := slices.IndexFunc(confirmed, func(r KernelResult) bool { return r.Choice == joined })
			if i < 0 {
				again, err := measure(nil)
				if err != nil {
					return t, err
				}
				r, err := measure(picks)
				if err != nil {
					r = KernelResult{Choice: joined, Error: err.Error()}
				}
				confirmed = append(confirmed, again, r)
				i = len(confirmed) - 1
			}
			if confirmed[i].Error != "" || obj.time(confirmed[i]) >= obj.time(confirmed[i-1])*(1-TuneMargin) {
				picks = nil
			}
		}
		*obj.pick = picks
	}
	t.Setting = base.Setting
	for i, r := range append(measured, confirmed...) {
		var choices []string
		if r.Choice != "" {
			choices = strings.Split(r.Choice, ",")
		}
		t.Results = append(t.Results, ops.KernelTuningResult{Choices: choices, StepGPUMS: r.StepGPUMS,
			ForwardGPUMS: r.ForwardGPUMS, Again: i >= len(measured), Error: r.Error})
	}
	return t, nil
}

// tunePicks is, for each kernel choice, its value that beats base by more
// than TuneMargin in the given time, the fastest where several do, in the
// choices' order; best is the fastest of them (base when none).
func tunePicks(base KernelResult, singles []KernelResult, time func(KernelResult) float64) (picks []string, best KernelResult) {
	best = base
	fastest := map[string]KernelResult{}
	var names []string
	for _, r := range singles {
		if r.Error != "" || time(r) >= time(base)*(1-TuneMargin) {
			continue
		}
		name, _, _ := strings.Cut(r.Choice, "=")
		if f, ok := fastest[name]; !ok || time(r) < time(f) {
			if !ok {
				names = append(names, name)
			}
			fastest[name] = r
		}
	}
	for _, name := range names {
		r := fastest[name]
		picks = append(picks, r.Choice)
		if time(r) < time(best) {
			best = r
		}
	}
	return picks, best
}

// WriteTuning prints a tuning: each measurement's GPU times and speed-ups
// against the engine's own rules (measured last before it), then the
// choices picked.
func WriteTuning(w io.Writer, t ops.KernelTuning) {
	fmt.Fprintf(w, "kernel tuning of %s (driver %s), the universal network at %s:\n", t.Device, t.Driver, t.Setting)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "choices\ttrain step GPU ms\tforward GPU ms\tstep speed-up\tforward speed-up\t")
	rules := t.Results[0] // each row against the last measurement of the rules before it
	for i, r := range t.Results {
		name, step, fwd := cmp.Or(strings.Join(r.Choices, ","), "(engine's own rules)"), "", ""
		if r.Again {
			name += ", again"
		}
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\n", name, r.Error)
			continue
		}
		if i > 0 {
			step, fwd = ratio(rules.StepGPUMS, r.StepGPUMS), ratio(rules.ForwardGPUMS, r.ForwardGPUMS)
		}
		if len(r.Choices) == 0 {
			rules = r
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\t%s\t\n", name, r.StepGPUMS, r.ForwardGPUMS, step, fwd)
	}
	tw.Flush()
	for _, set := range []struct {
		what    string
		choices []string
	}{{"training", t.Train}, {"prediction", t.Predict}} {
		fmt.Fprintf(w, "for %s: %s\n", set.what, cmp.Or(strings.Join(set.choices, " "),
			fmt.Sprintf("the engine's own rules (no choice beat them by more than %.0f%%)", 100*TuneMargin)))
	}
}
