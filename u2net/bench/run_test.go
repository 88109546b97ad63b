package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// TestRunFitsTheDevice benchmarks under a memory limit that the network at
// 64³ and 32³ and the scaling's 64³ exceed: the network is measured at the
// largest halved size that fits (16³), with a note, and the scaling size
// is reported as not fitting, where before the whole run failed.
func TestRunFitsTheDevice(t *testing.T) {
	g := opstest.GPU(t, vk.Options{MemoryLimit: 8 << 20})
	opt := Options{
		Levels:  []Shape{},
		Repeats: 1,
		Network: NetSetting{Domains: 1, Base: 2, Batch: 1, Size: 64, Pools: [3]int{4, 4, 4}},
		Scaling: []int{16, 64}, ScalingNet: NetSetting{Domains: 1, Base: 2, Batch: 1},
	}
	rep, err := Run(g, opt, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Network) != 2 {
		t.Fatalf("%d network results, want 2", len(rep.Network))
	}
	for _, n := range rep.Network {
		if !strings.Contains(n.Setting, "pools [3 3 3], 16³") || n.Note != "64³ does not fit the device" || n.StepMS <= 0 {
			t.Errorf("%s: setting %q, note %q, step %.1f ms; want 16³ with 3 poolings, a note on 64³, a time", n.Mode, n.Setting, n.Note, n.StepMS)
		}
	}
	if len(rep.Scaling) != 2 || rep.Scaling[0].ForwardMS <= 0 || rep.Scaling[0].Skipped != "" || rep.Scaling[1].Skipped == "" {
		t.Errorf("scaling %+v: want 16³ measured and 64³ skipped", rep.Scaling)
	}
	var out bytes.Buffer
	WriteText(&out, []*Report{rep})
	for _, want := range []string{"universal: 64³ does not fit the device", "64³  does not fit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, out.String())
		}
	}
}

// An operation that does not fit the device is reported as skipped, and
// the others are measured: before, the whole run failed.
func TestMeasureSkipsWhatDoesNotFit(t *testing.T) {
	// Activations of 1 MiB: two rotated sets, the transposed convolution's
	// tensors (15 MiB) exceed the limit, the others' fit.
	g := opstest.GPU(t, vk.Options{MemoryLimit: 10 << 20})
	s := Shape{N: 1, C: 8, S: ref.Dims3{32, 32, 32}}
	res, err := measure(g, levelOps(s), 0, 1, ops.Peaks{}, nil)
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	skipped := map[string]bool{}
	for _, r := range res {
		if r.Skipped != "" {
			skipped[r.Op] = true
			if r.FwdBwdMS != 0 {
				t.Errorf("%s: skipped (%s) with a time, %.3f ms", r.Op, r.Skipped, r.FwdBwdMS)
			}
		} else if r.FwdMS <= 0 || r.BwdMS <= 0 {
			t.Errorf("%s: fwd %.3f ms, bwd %.3f ms", r.Op, r.FwdMS, r.BwdMS)
		} else {
			// One repeat: each dispatch's median is its one time, and
			// they add up to the call's.
			for _, pass := range []struct {
				name string
				ms   float64
				ks   []KernelTime
			}{{"fwd", r.FwdMS, r.FwdDispatches}, {"bwd", r.BwdMS, r.BwdDispatches}} {
				if sum := totalMS(pass.ks); len(pass.ks) == 0 || math.Abs(sum-pass.ms) > 1e-9*pass.ms {
					t.Errorf("%s %s: dispatches %+v add up to %.6f ms, want %.6f", r.Op, pass.name, pass.ks, sum, pass.ms)
				}
			}
		}
	}
	for _, r := range res {
		t.Logf("%s: %s", r.Op, r.Skipped)
	}
	if len(res) != len(levelOps(s)) || !skipped["convT2"] || skipped["leakyrelu"] {
		t.Fatalf("%d results, skipped %v: want every op, convT2 skipped and LeakyReLU measured", len(res), skipped)
	}
	var out bytes.Buffer
	rep := &Report{Engine: "e", Ops: res, Separable: []SepResult{separable(0, s, res)}}
	WriteText(&out, []*Report{rep, rep})
	if !strings.Contains(out.String(), "convT2  1×8×32×32×32  does not fit") {
		t.Errorf("the text report does not show convT2 as not fitting:\n%s", out.String())
	}
}

// A CPU device runs the GEMM family on direct kernels: the tiling sweep,
// hours of work there, is skipped with a line that says so.
func TestTilesSkippedOnCPUDevices(t *testing.T) {
	g := opstest.GPU(t, vk.Options{})
	if g.Device().Info().Type != vk.TypeCPU {
		t.Skipf("device %s is not a CPU device", g.Device().Info().Name)
	}
	var lines []string
	rep, err := Run(g, Options{Levels: []Shape{}, Repeats: 1, Tiles: Shape{N: 2, C: 32, S: ref.Dims3{64, 64, 64}}},
		func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Tiles) != 0 || !strings.Contains(strings.Join(lines, "\n"), "GEMM tilings skipped") {
		t.Errorf("%d tilings measured, log %q: want none, and the skip said", len(rep.Tiles), lines)
	}
}

// Inputs rotate over enough sets to exceed the caches, but tiny operations
// over at most maxSets: at 1×2×4³ a CPU device's budget meant 65536 sets,
// whose allocations took minutes.
func TestSetsFor(t *testing.T) {
	cpu := ops.NewCPU()
	for _, c := range []struct {
		s    Shape
		want int
	}{
		{Shape{N: 1, C: 2, S: ref.Dims3{4, 4, 4}}, maxSets},
		{Shape{N: 1, C: 8, S: ref.Dims3{16, 16, 16}}, 256},   // 64 MiB / 256 KiB per set
		{Shape{N: 2, C: 32, S: ref.Dims3{64, 64, 64}}, 2},    // one set is 128 MiB
		{Shape{N: 1, C: 16, S: ref.Dims3{32, 32, 32}}, 16},   // 4 MiB per set
		{Shape{N: 1, C: 1, S: ref.Dims3{1, 1, 2}}, maxSets},  // 16 bytes
		{Shape{N: 2, C: 16, S: ref.Dims3{128, 128, 128}}, 2}, // beyond the budget
		{Shape{N: 1, C: 16, S: ref.Dims3{8, 8, 8}}, maxSets}, // 64 KiB per set: the cap exactly
	} {
		if got := setsFor(cpu, op{in: c.s}); got != c.want {
			t.Errorf("%v: %d sets, want %d", c.s, got, c.want)
		}
	}
}

// The kernel-choice section measures the universal network with the
// choices as set, then under each other value of each choice (or lists it
// unmeasured where it records the same dispatches: the device's own class
// does), and leaves the choices as they were.
func TestKernelAB(t *testing.T) {
	g := opstest.GPU(t, vk.Options{})
	if err := g.SetKernel("norm=chunked"); err != nil {
		t.Fatal(err)
	}
	defer g.SetKernel("norm=auto")
	opt := Options{Levels: []Shape{}, Repeats: 1,
		Kernels: NetSetting{Domains: 1, Base: 2, Batch: 1, Size: 8, Pools: [3]int{1, 1, 1}}}
	rep, err := Run(g, opt, func(s string) {})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{""}
	for _, c := range ops.KernelChoices() {
		for _, v := range c.Values {
			if c.Name+"="+v != "norm=chunked" {
				want = append(want, c.Name+"="+v)
			}
		}
	}
	own := "device-class=gpu"
	if g.Device().Info().Type == vk.TypeCPU {
		own = "device-class=cpu"
	}
	var got []string
	for _, k := range rep.KernelAB {
		got = append(got, k.Choice)
		if !k.Same && !(k.StepGPUMS > 0 && k.ForwardGPUMS > 0) || !strings.Contains(k.Setting, "8³") {
			t.Errorf("%q: %+v, want GPU times at 8³", k.Choice, k)
		}
		if k.Choice == own && !k.Same {
			t.Errorf("%s, the device's own class, was measured: %+v", own, k)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("choices measured %q, want %q", got, want)
	}
	if k := g.Kernels(); len(k) != 1 || k[0] != "norm=chunked" {
		t.Errorf("choices after the section: %v, want them as set (norm=chunked)", k)
	}
	var out bytes.Buffer
	WriteText(&out, []*Report{rep})
	for _, s := range []string{"kernel choices, the universal network at", "(as set)", "depthwise-forward=stream", "norm=fused"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the text report lacks %q:\n%s", s, out.String())
		}
	}
}
