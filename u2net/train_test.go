package u2net

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/ref"
)

func trainSteps(t *testing.T, net *Net, dom, steps int, seed uint64) []Losses {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	var out []Losses
	for i := 0; i < steps; i++ {
		x, l := tinyBatch(r, net.Model.Config.Domains[dom], 2, tinySize)
		loss, err := net.TrainStep(dom, 2, tinySize, x, l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, loss)
	}
	if err := net.Pull(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameValues(t *testing.T, what string, a, b []float32) {
	t.Helper()
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s[%d]: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// Training the same model with the same data twice gives the same bits.
func TestDeterministicReplay(t *testing.T) {
	var runs [2]*Model
	for k := range runs {
		m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 11)
		net, err := NewNet(m, ops.NewCPU())
		if err != nil {
			t.Fatal(err)
		}
		trainSteps(t, net, 0, 2, 5)
		net.Close()
		runs[k] = m
	}
	for _, p := range runs[0].Params {
		sameValues(t, p.Name, runs[0].Values[p.Name], runs[1].Values[p.Name])
	}
}

// Training reduces the loss on a fixed batch.
func TestTrainingLowersLoss(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 3)
	net, _ := NewNet(m, ops.NewCPU())
	defer net.Close()
	net.Opt.LR = 3e-3
	r := rand.New(rand.NewPCG(1, 2))
	x, l := tinyBatch(r, m.Config.Domains[0], 2, tinySize)
	first, err := net.TrainStep(0, 2, tinySize, x, l)
	if err != nil {
		t.Fatal(err)
	}
	var last Losses
	for i := 0; i < 15; i++ {
		if last, err = net.TrainStep(0, 2, tinySize, x, l); err != nil {
			t.Fatal(err)
		}
	}
	if !(last.Total() < 0.8*first.Total()) {
		t.Errorf("loss went from %.4f to %.4f in 15 steps", first.Total(), last.Total())
	}
}

// A new domain trained with frozen shared parameters leaves the shared
// parameters bit-identical and the earlier domains' predictions unchanged.
func TestNewDomainWithFrozenShared(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 21)
	cpu := ops.NewCPU()
	r := rand.New(rand.NewPCG(8, 8))
	x, _ := tinyBatch(r, m.Config.Domains[0], 1, tinySize)
	net, _ := NewNet(m, cpu)
	before, err := net.Forward(0, 1, tinySize, x)
	if err != nil {
		t.Fatal(err)
	}
	net.Close()
	old := map[string][]float32{}
	for _, p := range m.Params {
		old[p.Name] = append([]float32(nil), m.Values[p.Name]...)
	}

	if err := m.AddDomain(Domain{Name: "us", InChannels: 3, Classes: 4}, 9); err != nil {
		t.Fatal(err)
	}
	for name, v := range old {
		sameValues(t, "after AddDomain "+name, v, m.Values[name])
	}
	net, _ = NewNet(m, cpu)
	defer net.Close()
	net.FreezeShared = true
	trainSteps(t, net, 2, 2, 4)
	changed := 0
	for _, p := range m.Params {
		if v, ok := old[p.Name]; ok {
			sameValues(t, "after training the new domain "+p.Name, v, m.Values[p.Name])
		} else if p.Domain == 2 {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no parameter of the new domain exists")
	}
	after, err := net.Forward(0, 1, tinySize, x)
	if err != nil {
		t.Fatal(err)
	}
	sameValues(t, "domain ct logits", before, after)
	if err := m.AddDomain(Domain{Name: "us", InChannels: 1, Classes: 2}, 1); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("adding a duplicate domain: %v", err)
	}
}

// A universal step on one domain updates the shared parameters and that
// domain's own, one packed group each, and no other domain's.
func TestStepUpdatesItsGroupsOnly(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 23)
	old := map[string][]float32{}
	for _, p := range m.Params {
		old[p.Name] = append([]float32(nil), m.Values[p.Name]...)
	}
	net, _ := NewNet(m, ops.NewCPU())
	defer net.Close()
	trainSteps(t, net, 1, 2, 5)
	changed := map[int]int{}
	for _, p := range m.Params {
		if !slices.Equal(old[p.Name], m.Values[p.Name]) {
			changed[p.Domain]++
		}
		if p.Domain == 0 {
			sameValues(t, "domain 0's "+p.Name+" after training domain 1", old[p.Name], m.Values[p.Name])
		}
	}
	if changed[-1] == 0 || changed[1] == 0 {
		t.Errorf("parameters changed per domain (-1: shared): %v; want shared and domain 1's", changed)
	}
	if len(net.groups) != 3 {
		t.Errorf("%d parameter groups, want 3 (shared, ct, mr)", len(net.groups))
	}
	if net.groups[0].grads != nil {
		t.Error("domain 0, never trained, has gradient tensors")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		json, want string
	}{
		{`{"mode":"hybrid","domains":[{"name":"a","in_channels":1,"classes":2}]}`, `unknown mode "hybrid"`},
		{`{"upsample":"bilinear","domains":[{"name":"a","in_channels":1,"classes":2}]}`, `unknown upsample "bilinear"`},
		{`{"base_channels":0,"domains":[{"name":"a","in_channels":1,"classes":2}]}`, "base_channels = 0"},
		{`{"domains":[{"name":"a","in_channels":-1,"classes":2}]}`, "in_channels = -1"},
		{`{"domains":[{"name":"a","in_channels":1}]}`, "classes = 0"},
		{`{"domains":[{"name":"a","in_channels":1,"classes":2},{"name":"a","in_channels":1,"classes":2}]}`, `duplicate domain name "a"`},
		{`{"domains":[]}`, "no domains"},
		{`{"modes":"universal","domains":[{"name":"a","in_channels":1,"classes":2}]}`, "unknown field"},
	}
	for _, c := range cases {
		if _, err := ParseConfig([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseConfig(%s) = %v, want %q", c.json, err, c.want)
		}
	}
	cfg := tinyConfig(ModeUniversal, UpsampleTranspose)
	if err := cfg.CheckInputSize([3]int{4, 8, 6}); err == nil || !strings.Contains(err.Error(), "axis W (6) must be a positive multiple of 4") {
		t.Errorf("CheckInputSize: %v", err)
	}
	if err := cfg.CheckInputSize(cfg.TotalStride()); err == nil || !strings.Contains(err.Error(), "one voxel") {
		t.Errorf("CheckInputSize of the total stride: %v, want the deepest level's single voxel refused", err)
	}
	if err := cfg.CheckInputSize([3]int{2, 4, 8}); err != nil {
		t.Errorf("CheckInputSize of two deepest voxels: %v", err)
	}
	m, _ := New(cfg, 1)
	net, _ := NewNet(m, ops.NewCPU())
	defer net.Close()
	if _, err := net.Forward(0, 1, [3]int{4, 8, 6}, make([]float32, 4*8*6)); err == nil {
		t.Error("Forward accepted a size not divisible by the strides")
	}
	if _, err := net.Forward(0, 1, tinySize, make([]float32, 5)); err == nil {
		t.Error("Forward accepted an input of the wrong length")
	}
}

func TestFirstOutside(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	// Large enough to be counted in parallel, bad only in the last range.
	large := make([]int32, 1<<20)
	large[len(large)-3], large[len(large)-1] = 7, -1
	for _, c := range []struct {
		labels  []int32
		classes int
		want    int
	}{
		{large, 2, len(large) - 3},
		{large[:len(large)-3], 2, -1},
		{nil, 2, -1},
		{[]int32{0, 1, 1, 0}, 2, -1},
		{[]int32{0, 1, 2, 0}, 2, 2},
		{[]int32{0, -1, 5}, 3, 1},
		{[]int32{-2147483648}, 2, 0},
		{[]int32{3, 3, 2}, 3, 0},
	} {
		if got := firstOutside(c.labels, c.classes); got != c.want {
			t.Errorf("firstOutside(%v, %d) = %d, want %d", c.labels, c.classes, got, c.want)
		}
	}
}

func TestTrainStepRefusesBadLabels(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 3)
	net, _ := NewNet(m, ops.NewCPU())
	defer net.Close()
	r := rand.New(rand.NewPCG(2, 2))
	x, l := tinyBatch(r, m.Config.Domains[1], 1, tinySize)
	for _, bad := range []int32{-1, 3} {
		l[5] = bad
		_, err := net.TrainStep(1, 1, tinySize, x, l)
		want := fmt.Sprintf("label %d at index 5 outside 0..2", bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("label %d: error %v, want %q", bad, err, want)
		}
	}
}

// Probabilities is the softmax of Forward's logits, computed on the engine.
func TestProbabilitiesAreSoftmaxOfLogits(t *testing.T) {
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 31)
	net, _ := NewNet(m, ops.NewCPU())
	defer net.Close()
	d := m.Config.Domains[1]
	x, _ := tinyBatch(rand.New(rand.NewPCG(4, 4)), d, 2, tinySize)
	logits, err := net.Forward(1, 2, tinySize, x)
	if err != nil {
		t.Fatal(err)
	}
	got, err := net.Probabilities(1, 2, tinySize, x)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(logits))
	p := ref.LossParams{N: 2, Classes: d.Classes, Size: ref.Dims3(tinySize)}
	if err := ref.Softmax(p, logits, want); err != nil {
		t.Fatal(err)
	}
	sameValues(t, "probabilities", want, got)
	if _, err := net.Probabilities(1, 2, tinySize, x[1:]); err == nil || !strings.Contains(err.Error(), "input has") {
		t.Errorf("short input: %v", err)
	}
}

// ForwardInto and ProbabilitiesInto write what Forward and Probabilities
// return into every element of the caller's slice (poisoned first), again
// and again into the same one, on the reference engine and on the GPU
// (whose passes are replayed recordings), and refuse a slice of another
// length, naming both lengths.
func TestInferInto(t *testing.T) {
	for _, e := range []ops.Engine{ops.NewCPU(), openGPU(t)} {
		t.Run(e.Name(), func(t *testing.T) {
			m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 33)
			net, err := NewNet(m, e)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close()
			l, err := net.OutputLen(1, 2, tinySize)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float32, l)
			r := rand.New(rand.NewPCG(5, 5))
			for run := range 2 {
				x, _ := tinyBatch(r, m.Config.Domains[1], 2, tinySize)
				for _, c := range []struct {
					name string
					into func(x, out []float32) error
					new  func(x []float32) ([]float32, error)
				}{
					{"forward", func(x, out []float32) error { return net.ForwardInto(1, 2, tinySize, x, out) },
						func(x []float32) ([]float32, error) { return net.Forward(1, 2, tinySize, x) }},
					{"probabilities", func(x, out []float32) error { return net.ProbabilitiesInto(1, 2, tinySize, x, out) },
						func(x []float32) ([]float32, error) { return net.Probabilities(1, 2, tinySize, x) }},
				} {
					want, err := c.new(x)
					if err != nil {
						t.Fatal(err)
					}
					for i := range out {
						out[i] = float32(math.NaN())
					}
					if err := c.into(x, out); err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
							t.Fatalf("run %d, %s: value %d = %v, want %v", run, c.name, i, out[i], want[i])
						}
					}
					err = c.into(x, out[1:])
					if wantErr := fmt.Sprintf("output has room for %d values, want batch 2", l-1); err == nil || !strings.Contains(err.Error(), wantErr) {
						t.Errorf("%s into a short slice: error %v, want one saying %q", c.name, err, wantErr)
					}
				}
			}
		})
	}
}

// A head's labels are the input's at every factor-th voxel, on any number
// of cores (the second case is large enough to be split).
func TestHeadDownsample(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const n = 2
	for _, c := range []struct{ size, factor [3]int }{
		{[3]int{8, 12, 64}, [3]int{2, 4, 2}},
		{[3]int{32, 128, 128}, [3]int{2, 2, 2}},
	} {
		size, factor := c.size, c.factor
		head := [3]int{size[0] / factor[0], size[1] / factor[1], size[2] / factor[2]}
		labels := make([]int32, n*size[0]*size[1]*size[2])
		for i := range labels {
			labels[i] = int32(i)
		}
		h := &lossHead{a: &act{size: head}, factor: factor, host: make([]int32, n*head[0]*head[1]*head[2])}
		for i := range h.host {
			h.host[i] = -1
		}
		h.downsample(labels, n, size)
		i := 0
		for b := range n {
			for z := range head[0] {
				for y := range head[1] {
					for x := range head[2] {
						want := ((b*size[0]+z*factor[0])*size[1]+y*factor[1])*size[2] + x*factor[2]
						if h.host[i] != int32(want) {
							t.Fatalf("%v by %v: head voxel %v of sample %d holds input voxel %d, want %d", size, factor, [3]int{z, y, x}, b, h.host[i], want)
						}
						i++
					}
				}
			}
		}
	}
}
