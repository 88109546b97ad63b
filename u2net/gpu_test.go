package u2net

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/ops/ref"
	"github.com/u2net-vk/u2net/vk"
)

func openGPU(t testing.TB) *ops.GPU { return opstest.GPU(t, vk.Options{}) }

// The whole network on the GPU engine matches the CPU reference engine:
// logits, losses and every parameter gradient, in each mode, for two domains
// with different channel and class counts and anisotropic strides; with the
// kernels and sizes of both classes of device (lavapipe then runs a GPU's
// code paths, under the validation layer in CI, and a GPU lavapipe's).
func TestGPUMatchesCPU(t *testing.T) {
	g := openGPU(t)
	defer g.SetDeviceClass(ops.ClassOfDevice)
	for _, c := range []struct {
		mode, up string
		class    ops.DeviceClass
	}{
		{ModeUniversal, UpsampleTranspose, ops.ClassOfDevice},
		{ModeUniversal, UpsampleNearest, ops.ClassOfDevice},
		{ModeShared, UpsampleNearest, ops.ClassOfDevice},
		{ModeIndependent, UpsampleTranspose, ops.ClassOfDevice},
		{ModeUniversal, UpsampleTranspose, ops.ClassCPU},
		{ModeUniversal, UpsampleTranspose, ops.ClassGPU},
		{ModeShared, UpsampleNearest, ops.ClassGPU},
		{ModeUniversal, UpsampleNearest, ops.ClassGPU},
	} {
		name := c.mode + "-" + c.up
		if c.class != ops.ClassOfDevice {
			name += map[ops.DeviceClass]string{ops.ClassCPU: "-cpu-sizes", ops.ClassGPU: "-gpu-sizes"}[c.class]
		}
		t.Run(name, func(t *testing.T) {
			g.SetDeviceClass(c.class)
			m, err := New(tinyConfig(c.mode, c.up), 13)
			if err != nil {
				t.Fatal(err)
			}
			cpuNet, err := NewNet(m, ops.NewCPU())
			if err != nil {
				t.Fatal(err)
			}
			defer cpuNet.Close()
			gpuNet, err := NewNet(m, g)
			if err != nil {
				t.Fatal(err)
			}
			defer gpuNet.Close()
			// Universal mode also trains the deep-supervision heads.
			cpuNet.DeepSupervisionLoss = c.mode == ModeUniversal
			gpuNet.DeepSupervisionLoss = c.mode == ModeUniversal
			r := rand.New(rand.NewPCG(17, 19))
			for dom := range m.Config.Domains {
				x, labels := tinyBatch(r, m.Config.Domains[dom], 2, tinySize)
				want, err := cpuNet.Forward(dom, 2, tinySize, x)
				if err != nil {
					t.Fatal(err)
				}
				got, err := gpuNet.Forward(dom, 2, tinySize, x)
				if err != nil {
					t.Fatal(err)
				}
				// The second pass replays the recorded one: same bits.
				again, err := gpuNet.Forward(dom, 2, tinySize, x)
				if err != nil {
					t.Fatal(err)
				}
				sameValues(t, "replayed logits", got, again)
				// A dozen fp32 layers with instance norms: errors of ~1e-6
				// per layer compound; 1e-4 still catches any wiring fault.
				if e := ref.RelL2(got, want); !(e < 1e-4) {
					t.Errorf("domain %d logits: relative L2 error %.3g", dom, e)
				}
				lc, err := cpuNet.Gradients(dom, 2, tinySize, x, labels)
				if err != nil {
					t.Fatal(err)
				}
				lg, err := gpuNet.Gradients(dom, 2, tinySize, x, labels)
				if err != nil {
					t.Fatal(err)
				}
				if d := lc.Total() - lg.Total(); d > 1e-4 || d < -1e-4 {
					t.Errorf("domain %d loss: cpu %.6f gpu %.6f", dom, lc.Total(), lg.Total())
				}
				// Biases followed by an instance norm have a gradient of
				// exactly zero, so errors are measured against the scale of
				// all the domain's gradients as well as each one's own.
				grads := map[string][2][]float32{}
				scale := 0.0
				for _, p := range m.Params {
					if p.Domain >= 0 && p.Domain != dom {
						continue
					}
					want, ok, err := cpuNet.Gradient(p.Name)
					if err != nil || !ok {
						continue
					}
					got, _, err := gpuNet.Gradient(p.Name)
					if err != nil {
						t.Fatal(err)
					}
					grads[p.Name] = [2][]float32{got, want}
					scale = math.Max(scale, rms(want))
				}
				for name, gw := range grads {
					diff := 0.0
					for i := range gw[0] {
						d := float64(gw[0][i]) - float64(gw[1][i])
						diff += d * d
					}
					diff = math.Sqrt(diff)
					norm := rms(gw[1]) * math.Sqrt(float64(len(gw[1])))
					if !(diff <= 2e-3*norm+1e-5*scale*math.Sqrt(float64(len(gw[1])))) {
						t.Errorf("domain %d: gradient of %s: L2 error %.3g, norm %.3g, scale %.3g", dom, name, diff, norm, scale)
					}
				}
			}
		})
	}
}

// Training on the GPU twice from the same start gives the same bits.
func TestGPUDeterministic(t *testing.T) {
	g := openGPU(t)
	var runs [2]*Model
	for k := range runs {
		m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 11)
		net, err := NewNet(m, g)
		if err != nil {
			t.Fatal(err)
		}
		trainSteps(t, net, 1, 2, 5)
		net.Close()
		runs[k] = m
	}
	for _, p := range runs[0].Params {
		sameValues(t, fmt.Sprint("gpu ", p.Name), runs[0].Values[p.Name], runs[1].Values[p.Name])
	}
}

func rms(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s / float64(max(1, len(v))))
}

// A recorded forward pass replays with new inputs and with parameters that
// training has changed since it was recorded.
func TestGPUReplayedForwardFollowsInputsAndTraining(t *testing.T) {
	g := openGPU(t)
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 23)
	net, err := NewNet(m, g)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	r := rand.New(rand.NewPCG(5, 6))
	// Logits and probabilities are two recordings of one graph: each must
	// follow the inputs and the parameters.
	check := func(what string, x []float32) {
		t.Helper()
		if err := net.Pull(); err != nil {
			t.Fatal(err)
		}
		cpu, err := NewNet(m, ops.NewCPU())
		if err != nil {
			t.Fatal(err)
		}
		defer cpu.Close()
		for _, pass := range []struct {
			name     string
			gpu, ref func(dom, batch int, size [3]int, x []float32) ([]float32, error)
		}{{"logits", net.Forward, cpu.Forward}, {"probabilities", net.Probabilities, cpu.Probabilities}} {
			got, err := pass.gpu(0, 2, tinySize, x)
			if err != nil {
				t.Fatal(err)
			}
			want, err := pass.ref(0, 2, tinySize, x)
			if err != nil {
				t.Fatal(err)
			}
			if e := ref.RelL2(got, want); !(e < 1e-4) {
				t.Errorf("%s, %s: relative L2 error %.3g against the CPU engine", what, pass.name, e)
			}
		}
	}
	x1, _ := tinyBatch(r, m.Config.Domains[0], 2, tinySize)
	x2, l2 := tinyBatch(r, m.Config.Domains[0], 2, tinySize)
	check("first pass", x1)
	check("new input", x2)
	if _, err := net.TrainStep(0, 2, tinySize, x2, l2); err != nil {
		t.Fatal(err)
	}
	check("after a training step", x1)
}

// Switching the engine's timing re-records the forward pass: a profile gets
// the dispatches' GPU times, and the results keep their bits either way.
func TestGPUReplayedForwardUnderTiming(t *testing.T) {
	g := openGPU(t)
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 29)
	net, err := NewNet(m, g)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	x, _ := tinyBatch(rand.New(rand.NewPCG(7, 8)), m.Config.Domains[0], 2, tinySize)
	plain, err := net.Forward(0, 2, tinySize, x)
	if err != nil {
		t.Fatal(err)
	}
	for _, timed := range []bool{true, false} {
		if err := g.SetTimed(timed); err != nil {
			t.Fatal(err)
		}
		got, err := net.Forward(0, 2, tinySize, x)
		if err != nil {
			t.Fatal(err)
		}
		sameValues(t, fmt.Sprintf("logits (timed %v)", timed), got, plain)
		if n := len(g.TakeTimings()); timed && n == 0 || !timed && n != 0 {
			t.Errorf("timed %v: %d dispatch timings", timed, n)
		}
	}
}

// BenchmarkTrainStepGPU times whole training steps and forward passes of
// the universal network (base 16, five domains, deep supervision) at a
// small volume, where recording the passes costs as much as running them:
// the host-side cost per step shows here.
func BenchmarkTrainStepGPU(b *testing.B) {
	g := openGPU(b)
	c := DefaultConfig()
	c.PoolsPerAxis = [3]int{3, 3, 3}
	for i := range 5 {
		c.Domains = append(c.Domains, Domain{Name: fmt.Sprint("d", i), InChannels: 1, Classes: 2})
	}
	m, err := New(c, 1)
	if err != nil {
		b.Fatal(err)
	}
	net, err := NewNet(m, g)
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	size := [3]int{16, 16, 16}
	x, l := tinyBatch(rand.New(rand.NewPCG(1, 2)), c.Domains[0], 1, size)
	b.Run("step", func(b *testing.B) {
		for b.Loop() {
			if _, err := net.TrainStep(0, 1, size, x, l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			if _, err := net.Forward(0, 1, size, x); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Training steps replayed from a recording give the bits of steps recorded
// afresh — losses, parameters, optimiser state and gradients — across
// domains, deep-supervision heads, a FreezeShared switch and timing.
func TestGPUReplayedStepsMatchRecorded(t *testing.T) {
	g := openGPU(t)
	m, _ := New(tinyConfig(ModeUniversal, UpsampleTranspose), 31)
	r := rand.New(rand.NewPCG(9, 10))
	type batch struct {
		dom  int
		x    []float32
		l    []int32
		step func(n *Net)
	}
	var batches []batch
	for i, dom := range []int{0, 1, 0, 1, 0, 1} {
		x, l := tinyBatch(r, m.Config.Domains[dom], 2, tinySize)
		b := batch{dom: dom, x: x, l: l}
		switch i {
		case 3:
			b.step = func(n *Net) { n.FreezeShared = true }
		case 4:
			b.step = func(n *Net) {
				if err := g.SetTimed(true); err != nil {
					t.Fatal(err)
				}
			}
		case 5:
			b.step = func(n *Net) {
				if err := g.SetTimed(false); err != nil {
					t.Fatal(err)
				}
			}
		}
		batches = append(batches, b)
	}
	run := func(replay bool) (losses []Losses, state map[string][]float32) {
		net, err := NewNet(m, g)
		if err != nil {
			t.Fatal(err)
		}
		defer net.Close()
		net.DeepSupervisionLoss = true
		net.recordEachStep = !replay
		for _, b := range batches {
			if b.step != nil {
				b.step(net)
			}
			l, err := net.TrainStep(b.dom, 2, tinySize, b.x, b.l)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, l)
		}
		l, err := net.Gradients(0, 2, tinySize, batches[0].x, batches[0].l)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
		state = map[string][]float32{}
		for i, set := range []map[string]*ops.Tensor{net.values, net.grads, net.state1, net.state2} {
			for name, tt := range set {
				v := make([]float32, tt.Len())
				if err := g.Read(tt, v); err != nil {
					t.Fatal(err)
				}
				state[fmt.Sprintf("%s (set %d)", name, i)] = v
			}
		}
		g.TakeTimings()
		return losses, state
	}
	recLosses, recState := run(false)
	repLosses, repState := run(true)
	for i := range recLosses {
		if recLosses[i] != repLosses[i] {
			t.Errorf("step %d: replayed losses %+v, recorded %+v", i, repLosses[i], recLosses[i])
		}
	}
	if len(recState) != len(repState) {
		t.Fatalf("%d state tensors replayed, %d recorded", len(repState), len(recState))
	}
	for _, name := range slices.Sorted(maps.Keys(recState)) {
		sameValues(t, name, repState[name], recState[name])
	}
}
