package bench

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/vk"
)

// writeTiles lists each operation's fastest tilings with the default, and
// for each GEMM product the tiling that is fastest for that product alone.
func TestWriteTiles(t *testing.T) {
	res := []TileResult{
		{Op: "dense3", Shape: "2×32×64×64×64", Tile: "default", FwdMS: 2, BwdMS: 4, FwdBwdMS: 6,
			Products: map[string]float64{"fwd": 2, "dgrad": 1.5, "wgrad": 2.5}},
		{Op: "dense3", Shape: "2×32×64×64×64", Tile: "A", FwdMS: 1, BwdMS: 6, FwdBwdMS: 7,
			Products: map[string]float64{"fwd": 1, "dgrad": 3, "wgrad": 3}},
		{Op: "dense3", Shape: "2×32×64×64×64", Tile: "B", FwdMS: 3, BwdMS: 2.5, FwdBwdMS: 5.5,
			Products: map[string]float64{"fwd": 3, "dgrad": 1.2, "wgrad": 1.3}},
		{Op: "convT2", Shape: "2×32×64×64×64", Tile: "default", FwdMS: 1, BwdMS: 1, FwdBwdMS: 2,
			Products: map[string]float64{"wgrad": 0.5, "other": 1.5}},
		{Op: "convT2", Shape: "2×32×64×64×64", Tile: "A", FwdMS: 1, BwdMS: 1.2, FwdBwdMS: 2.2,
			Products: map[string]float64{"wgrad": 0.7, "other": 1.5}},
	}
	var buf bytes.Buffer
	writeTiles(&buf, res)
	out := buf.String()
	best := out[strings.Index(out, "best tiling per GEMM product"):]
	for _, want := range []struct{ op, product, tile string }{
		{"dense3", "fwd", "A"}, {"dense3", "dgrad", "B"}, {"dense3", "wgrad", "B"}, {"convT2", "wgrad", "default"},
	} {
		found := false
		for _, line := range strings.Split(best, "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[0] == want.op && f[1] == want.product {
				found = true
				if f[3] != want.tile {
					t.Errorf("%s %s: best tile %s, want %s\n%s", want.op, want.product, f[3], want.tile, best)
				}
			}
		}
		if !found {
			t.Errorf("no row for %s %s\n%s", want.op, want.product, best)
		}
	}
	if strings.Contains(best, "other") {
		t.Errorf("dispatches outside the GEMM family are listed as a product\n%s", best)
	}
	// Fastest first within an operation: B (5.5) before default (6) before A (7).
	ranking := out[:strings.Index(out, "best tiling")]
	if b, d, a := strings.Index(ranking, " B "), strings.Index(ranking, " default "), strings.Index(ranking, " A "); !(b < d && d < a) {
		t.Errorf("tilings of dense3 not fastest first\n%s", ranking)
	}
}

// A measurement's spread is the wider of its passes' ranges relative to
// their medians, and the report prints it beside the medians.
func TestSpread(t *testing.T) {
	for _, c := range []struct {
		name string
		r    OpResult
		want float64
	}{
		{"steady", OpResult{FwdMS: 1, FwdRangeMS: [2]float64{1, 1}, BwdMS: 2, BwdRangeMS: [2]float64{2, 2}}, 0},
		{"forward wider", OpResult{FwdMS: 1, FwdRangeMS: [2]float64{0.9, 1.5}, BwdMS: 2, BwdRangeMS: [2]float64{1.9, 2.1}}, 0.6},
		{"backward wider", OpResult{FwdMS: 1, FwdRangeMS: [2]float64{1, 1.1}, BwdMS: 2, BwdRangeMS: [2]float64{2, 6}}, 2},
		{"no backward", OpResult{FwdMS: 1, FwdRangeMS: [2]float64{1, 1.2}}, 0.2},
	} {
		if got := c.r.Spread(); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: spread %g, want %g", c.name, got, c.want)
		}
	}
	ms := func(v ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x*1e6))
		}
		return out
	}
	if got, want := timingOf(ms(3, 1, 7, 2, 5)), (timing{median: 3e6, min: 1e6, max: 7e6}); got.median != want.median ||
		got.min != want.min || got.max != want.max {
		t.Errorf("timingOf: %+v, want %+v", got, want)
	}
	var buf bytes.Buffer
	WriteText(&buf, []*Report{{Engine: "e", Ops: []OpResult{{Op: "depthwise3", Shape: "s", FwdMS: 1, FwdRangeMS: [2]float64{1, 1.25},
		BwdMS: 1, BwdRangeMS: [2]float64{1, 1}}}}})
	if out := buf.String(); !strings.Contains(out, "spread %") || !strings.Contains(out, " 25 ") {
		t.Errorf("the report does not show the spread (25%%):\n%s", out)
	}
}

// Each dispatch's time is the median over calls of that dispatch (not a
// share of the calls' median), and the report lists them per operation in
// the order recorded, naming the GEMM product.
func TestDispatchMedians(t *testing.T) {
	call := func(a, b float64) []vk.Timing {
		return []vk.Timing{{Kernel: "conv_taps", Label: "ConvTranspose3dBackward", Duration: time.Duration(a * 1e6)},
			{Kernel: "conv_gemm", Label: "ConvTranspose3dBackward/wgrad", Duration: time.Duration(b * 1e6)}}
	}
	got := dispatchMedians([][]vk.Timing{call(1, 9), call(3, 2), call(2, 4)})
	want := []KernelTime{{Kernel: "conv_taps", Op: "ConvTranspose3dBackward", Dispatches: 1, MS: 2},
		{Kernel: "conv_gemm", Op: "ConvTranspose3dBackward/wgrad", Dispatches: 1, MS: 4}}
	if !slices.Equal(got, want) {
		t.Errorf("dispatchMedians = %+v, want %+v", got, want)
	}
	if dispatchMedians(nil) != nil {
		t.Error("dispatchMedians of no calls is not nil")
	}
	var buf bytes.Buffer
	WriteText(&buf, []*Report{{Engine: "e", Ops: []OpResult{
		{Op: "convT2", Shape: "s", Level: -1, FwdMS: 1, BwdMS: 6, FwdDispatches: got[:1], BwdDispatches: got},
		{Op: "leakyrelu", Shape: "s", FwdMS: 1, BwdMS: 1}}}})
	out := buf.String()
	if line := "§8 convT2 s: fwd conv_taps 2.000; bwd conv_taps 2.000 + conv_gemm/wgrad 4.000\n"; !strings.Contains(out, line) {
		t.Errorf("the report does not list the dispatches as %q:\n%s", line, out)
	}
	if strings.Contains(out, "leakyrelu s:") {
		t.Errorf("an operation without dispatch times is listed:\n%s", out)
	}
}
