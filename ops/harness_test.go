package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

// The GPU engine is opened once per test binary: building pipelines is the
// slow part on lavapipe, and the vk.Device caches them.
var testGPU struct {
	once sync.Once
	g    *GPU
	err  error
}

// gpuEngine returns the shared GPU engine. Without a Vulkan device the test
// fails when U2NET_REQUIRE_GPU is set (as in CI) and is skipped otherwise.
func gpuEngine(t testing.TB) *GPU {
	t.Helper()
	testGPU.once.Do(func() {
		testGPU.g, testGPU.err = OpenGPU(os.Getenv("U2NET_DEVICE"))
	})
	if testGPU.err != nil {
		if vk.RequireGPU() {
			t.Fatalf("no Vulkan device (U2NET_REQUIRE_GPU is set): %v", testGPU.err)
		}
		t.Skipf("no Vulkan device: %v", testGPU.err)
	}
	return testGPU.g
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testGPU.g != nil {
		if err := testGPU.g.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the GPU engine:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// tensorSpec is one tensor of an op case: an input with data, or an output
// of n elements (poisoned with NaN, or -1 for labels, before the op runs).
type tensorSpec struct {
	name   string
	data   []float32
	labels []int32
	n      int  // outputs: element count
	out    bool // compared between engines after the run
	isLab  bool // output labels
}

func input(name string, data []float32) tensorSpec  { return tensorSpec{name: name, data: data} }
func inputLabels(name string, l []int32) tensorSpec { return tensorSpec{name: name, labels: l} }
func output(name string, n int) tensorSpec          { return tensorSpec{name: name, n: n, out: true} }
func outputLabels(name string, n int) tensorSpec {
	return tensorSpec{name: name, n: n, out: true, isLab: true}
}
func inout(name string, data []float32) tensorSpec {
	return tensorSpec{name: name, data: data, out: true}
}
func randn(r *rand.Rand, n int) []float32 { return randScaled(r, n, 1) }
func randScaled(r *rand.Rand, n int, s float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(s * r.NormFloat64())
	}
	return v
}

func randLabels(r *rand.Rand, n, classes int) []int32 {
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(r.IntN(classes))
	}
	return v
}

// makeTensors creates a case's tensors on e: inputs with their data,
// float outputs filled by fill, label outputs with label.
func makeTensors(e Engine, c opCase, fill func(n int) []float32, label int32) (map[string]*Tensor, error) {
	ts := map[string]*Tensor{}
	for _, s := range c.tensors {
		var t *Tensor
		var err error
		switch {
		case s.labels != nil:
			if t, err = e.AllocLabels(len(s.labels)); err == nil {
				err = e.WriteLabels(t, s.labels)
			}
		case s.isLab:
			l := make([]int32, s.n)
			for i := range l {
				l[i] = label
			}
			if t, err = e.AllocLabels(s.n); err == nil {
				err = e.WriteLabels(t, l)
			}
		case s.data != nil:
			if t, err = e.Alloc(len(s.data)); err == nil {
				err = e.Write(t, s.data)
			}
		default:
			if t, err = e.Alloc(s.n); err == nil {
				err = e.Write(t, fill(s.n))
			}
		}
		if err != nil {
			return ts, fmt.Errorf("tensor %s: %w", s.name, err)
		}
		ts[s.name] = t
	}
	return ts, nil
}

func freeTensors(e Engine, ts map[string]*Tensor) {
	for _, t := range ts {
		e.Free(t)
	}
}

// opCase runs the same operation on both engines and compares the outputs.
type opCase struct {
	name    string
	tensors []tensorSpec
	run     func(e Engine, t map[string]*Tensor) error
	// tol is the largest relative L2 error allowed per output (labels must
	// match exactly).
	tol float64
}

// runOn creates the case's tensors on e, runs it and reads the outputs.
func runOn(e Engine, c opCase) (map[string][]float32, map[string][]int32, error) {
	ts, err := makeTensors(e, c, func(n int) []float32 {
		poison := make([]float32, n)
		for i := range poison {
			poison[i] = float32(math.NaN())
		}
		return poison
	}, -1)
	defer freeTensors(e, ts)
	if err != nil {
		return nil, nil, err
	}
	if err := c.run(e, ts); err != nil {
		return nil, nil, err
	}
	if err := e.Sync(); err != nil {
		return nil, nil, err
	}
	fl, lb := map[string][]float32{}, map[string][]int32{}
	for _, s := range c.tensors {
		if !s.out {
			continue
		}
		t := ts[s.name]
		if t.DType() == Int32 {
			v := make([]int32, t.Len())
			if err := e.ReadLabels(t, v); err != nil {
				return nil, nil, err
			}
			lb[s.name] = v
			continue
		}
		v := make([]float32, t.Len())
		if err := e.Read(t, v); err != nil {
			return nil, nil, err
		}
		fl[s.name] = v
	}
	return fl, lb, nil
}

// allocator returns a function that allocates n floats on e for the
// test, freed when it ends.
func allocator(t *testing.T, e Engine) func(n int) *Tensor {
	return func(n int) *Tensor {
		x, err := e.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Free(x) })
		return x
	}
}

// checkSameBits runs want and got on the GPU engine, under the kernels of
// both device classes, and fails unless the named outputs have the same
// bits: got is a path that must change nothing but the work.
func checkSameBits(t *testing.T, name string, tensors []tensorSpec, outputs []string, want, got func(Engine, map[string]*Tensor) error) {
	t.Helper()
	g := gpuEngine(t)
	defer g.SetDeviceClass(ClassOfDevice)
	for _, class := range []DeviceClass{ClassCPU, ClassGPU} {
		g.SetDeviceClass(class)
		w, _, err := runOn(g, opCase{tensors: tensors, run: want})
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := runOn(g, opCase{tensors: tensors, run: got})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range outputs {
			for i, x := range v[n] {
				if math.Float32bits(x) != math.Float32bits(w[n][i]) {
					t.Errorf("%s, class %d: %s[%d] = %v, want the bits of %v", name, class, n, i, x, w[n][i])
					break
				}
			}
		}
	}
}

// checkCases runs every case on the CPU and the GPU engine and compares.
func checkCases(t *testing.T, cases []opCase) {
	t.Helper()
	g := gpuEngine(t)
	cpu := NewCPU()
	native := g.cpuTuned()
	defer g.SetDeviceClass(ClassOfDevice)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantF, wantL, err := runOn(cpu, c)
			if err != nil {
				t.Fatalf("cpu: %v", err)
			}
			// The device's own sizes, then those tuned for the other
			// class of device (cpuTuned).
			for _, cpuTuned := range []bool{native, !native} {
				g.SetDeviceClass(map[bool]DeviceClass{true: ClassCPU, false: ClassGPU}[cpuTuned])
				gotF, gotL, err := runOn(g, c)
				if err != nil {
					t.Fatalf("gpu (CPU-tuned %t): %v", cpuTuned, err)
				}
				names := make([]string, 0, len(wantF))
				for n := range wantF {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					if e := ref.RelL2(gotF[n], wantF[n]); !(e <= c.tol) {
						t.Errorf("CPU-tuned %t: %s: relative L2 error %.3g > %.3g%s", cpuTuned, n, e, c.tol, firstBad(gotF[n], wantF[n]))
					}
				}
				for n, want := range wantL {
					for i := range want {
						if gotL[n][i] != want[i] {
							t.Errorf("CPU-tuned %t: %s[%d] = %d, want %d", cpuTuned, n, i, gotL[n][i], want[i])
							break
						}
					}
				}
			}
		})
	}
}

// firstBad describes the first element that is NaN or far off, to tell an
// unwritten element from a numerical error.
func firstBad(got, want []float32) string {
	worst, at := 0.0, -1
	for i := range got {
		if i >= len(want) {
			break
		}
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(float64(got[i])) {
			return fmt.Sprintf(" (element %d is NaN: never written?)", i)
		}
		if d > worst {
			worst, at = d, i
		}
	}
	if at < 0 {
		return ""
	}
	return fmt.Sprintf(" (worst element %d: got %g, want %g)", at, got[at], want[at])
}

func TestElementwise(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var cases []opCase
	for _, n := range []int{1, 7, 256, 1031, 4124, 70001} {
		x, y, dy := randn(r, n), randn(r, n), randn(r, n)
		x[0] = 0 // LeakyReLU's gradient at 0 takes the slope side
		cases = append(cases,
			opCase{fmt.Sprintf("axpy/n=%d", n), []tensorSpec{input("x", x), inout("y", y)},
				func(e Engine, t map[string]*Tensor) error { return e.Axpy(-0.75, t["x"], t["y"]) }, 1e-7},
			opCase{fmt.Sprintf("add/n=%d", n), []tensorSpec{input("a", x), input("b", y), output("y", n)},
				func(e Engine, t map[string]*Tensor) error { return e.Add(t["a"], t["b"], t["y"]) }, 1e-7},
			opCase{fmt.Sprintf("add-in-place/n=%d", n), []tensorSpec{inout("a", x), input("b", y)},
				func(e Engine, t map[string]*Tensor) error { return e.Add(t["a"], t["b"], t["a"]) }, 1e-7},
			opCase{fmt.Sprintf("leaky/n=%d", n), []tensorSpec{input("x", x), output("y", n)},
				func(e Engine, t map[string]*Tensor) error { return e.LeakyReLU(ref.DefaultSlope, t["x"], t["y"]) }, 1e-7},
			opCase{fmt.Sprintf("leaky-backward/n=%d", n), []tensorSpec{input("x", x), input("dy", dy), output("dx", n)},
				func(e Engine, t map[string]*Tensor) error {
					return e.LeakyReLUBackward(ref.DefaultSlope, t["x"], t["dy"], t["dx"])
				}, 1e-7},
			opCase{fmt.Sprintf("fill-copy/n=%d", n), []tensorSpec{input("x", x), output("y", n), output("z", n)},
				func(e Engine, t map[string]*Tensor) error {
					if err := e.Fill(t["z"], 2.5); err != nil {
						return err
					}
					return e.Copy(t["y"], t["x"])
				}, 0},
		)
	}
	checkCases(t, cases)
}

// BenchmarkLeakyReLU times the activation forward and backward at the §8
// activation (2×32×64³) and at 1×8×16³ for slow devices.
func BenchmarkLeakyReLU(b *testing.B) {
	for _, s := range []struct {
		name string
		n    int
	}{{"2x32x64^3", 2 * 32 * 64 * 64 * 64}, {"1x8x16^3", 8 * 16 * 16 * 16}} {
		r := rand.New(rand.NewPCG(37, 38))
		x, dy := randn(r, s.n), randn(r, s.n)
		b.Run(s.name+"/fwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{tensors: []tensorSpec{input("x", x), output("y", s.n)},
				run: func(e Engine, t map[string]*Tensor) error { return e.LeakyReLU(ref.DefaultSlope, t["x"], t["y"]) }})
		})
		b.Run(s.name+"/bwd", func(b *testing.B) {
			benchCase(b, gpuEngine(b), opCase{tensors: []tensorSpec{input("x", x), input("dy", dy), output("dx", s.n)},
				run: func(e Engine, t map[string]*Tensor) error {
					return e.LeakyReLUBackward(ref.DefaultSlope, t["x"], t["dy"], t["dx"])
				}})
		})
	}
}

// Bad arguments are refused with an error naming the op, on both engines.
func TestArgumentErrors(t *testing.T) {
	g := gpuEngine(t)
	for _, e := range []Engine{NewCPU(), g} {
		a, _ := e.Alloc(10)
		b, _ := e.Alloc(11)
		l, _ := e.AllocLabels(10)
		cases := []struct {
			name string
			err  error
		}{
			{"Add lengths", e.Add(a, b, a)},
			{"Axpy lengths", e.Axpy(1, a, b)},
			{"Copy lengths", e.Copy(a, b)},
			{"Add labels", e.Add(a, l, a)},
			{"Leaky nil", e.LeakyReLU(0.01, nil, a)},
			{"Leaky slope", e.LeakyReLU(math.NaN(), a, a)},
			{"Write length", e.Write(a, make([]float32, 3))},
		}
		for _, c := range cases {
			if c.err == nil {
				t.Errorf("%s: %s accepted bad arguments", e.Name(), c.name)
			}
		}
		if _, err := e.Alloc(0); err == nil {
			t.Errorf("%s: Alloc(0) succeeded", e.Name())
		}
		other := NewCPU()
		x, _ := other.Alloc(10)
		if err := e.Copy(a, x); err == nil && e != Engine(other) {
			t.Errorf("%s: accepted a tensor of another engine", e.Name())
		}
		for _, t := range []*Tensor{a, b, l} {
			e.Free(t)
		}
		if err := e.Sync(); err != nil {
			t.Errorf("%s: Sync after refused calls: %v", e.Name(), err)
		}
	}
}

// benchBatch is how many timed calls benchCase makes between two
// synchronisations.
const benchBatch = 32

// benchCase times one case on e: tensors are made once, then each iteration
// records the operation, and the engine runs a batch of them at a time. On
// the GPU engine it also reports the GPU time of the op's dispatches from
// timestamps ("gpu-ms/op"), which excludes submission and host overhead,
// and returns it in ms (0 on other engines).
func benchCase(b *testing.B, e Engine, c opCase) float64 {
	b.Helper()
	// Outputs get random contents too: never time on zeros.
	r := rand.New(rand.NewPCG(1, 1))
	ts, err := makeTensors(e, c, func(n int) []float32 { return randn(r, n) }, 0)
	defer freeTensors(e, ts)
	if err != nil {
		b.Fatal(err)
	}
	g, isGPU := e.(*GPU)
	if isGPU {
		if err := g.SetTimed(true); err != nil {
			b.Fatal(err)
		}
		defer g.SetTimed(false)
	}
	// Warm up: pipelines are built, caches filled and a GPU's clocks
	// raised outside the timing (WarmUp). Timed calls go back to back,
	// synchronised only every benchBatch calls, as a training step issues
	// them: a GPU left idle between short submissions runs at a lower clock
	// (H200: the depthwise convolution at 2×32×64³ took 5× longer
	// synchronised call by call).
	if isGPU {
		if _, err := g.WarmUp(g.WarmTime(), func(int) error { return c.run(e, ts) }); err != nil {
			b.Fatal(err)
		}
	} else { // one call: pipelines and caches
		if err := c.run(e, ts); err != nil {
			b.Fatal(err)
		}
		if err := e.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	var gpuNS float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.run(e, ts); err != nil {
			b.Fatal(err)
		}
		if (i+1)%benchBatch != 0 && i+1 != b.N {
			continue
		}
		if err := e.Sync(); err != nil {
			b.Fatal(err)
		}
		if isGPU {
			for _, tm := range g.TakeTimings() {
				gpuNS += float64(tm.Duration)
			}
		}
	}
	if !isGPU {
		return 0
	}
	ms := gpuNS / float64(b.N) / 1e6
	b.ReportMetric(ms, "gpu-ms/op")
	return ms
}
