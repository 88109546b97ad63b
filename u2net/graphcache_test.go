package u2net

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/ops/opstest"
	"github.com/u2net-vk/u2net/vk"
)

func inferenceGraphs(n *Net) map[[3]int]*graph {
	out := map[[3]int]*graph{}
	for k, g := range n.graphs {
		if !k.training {
			out[k.size] = g
		}
	}
	return out
}

// Prediction over many window shapes keeps at most maxInferenceGraphs
// inference graphs, dropping the least recently used, and never a training
// graph; an evicted shape is rebuilt with the same result.
func TestInferenceGraphsBounded(t *testing.T) {
	cfg := tinyConfig(ModeUniversal, UpsampleTranspose)
	n := newTestNet(t, cfg, 1, ops.NewCPU())
	r := rand.New(rand.NewPCG(3, 3))
	d := cfg.Domains[0]
	x, l := tinyBatch(r, d, 1, tinySize)
	if _, err := n.Gradients(0, 1, tinySize, x, l); err != nil {
		t.Fatal(err)
	}
	sizes := [][3]int{{2, 8, 8}, {2, 8, 12}, {2, 12, 8}, {4, 4, 8}, {6, 8, 8}, {2, 16, 4}}
	inputs := map[[3]int][]float32{}
	first := map[[3]int][]float32{}
	forward := func(s [3]int) []float32 {
		t.Helper()
		if inputs[s] == nil {
			inputs[s], _ = tinyBatch(r, d, 1, s)
		}
		y, err := n.Forward(0, 1, s, inputs[s])
		if err != nil {
			t.Fatalf("size %v: %v", s, err)
		}
		return y
	}
	for _, s := range sizes {
		first[s] = forward(s)
		if got := len(inferenceGraphs(n)); got > maxInferenceGraphs {
			t.Fatalf("after size %v: %d inference graphs, want at most %d", s, got, maxInferenceGraphs)
		}
	}
	if _, ok := n.graphs[graphKey{0, 1, tinySize, true}]; !ok {
		t.Fatal("the training graph was evicted")
	}
	kept := inferenceGraphs(n)
	for i, s := range sizes {
		if _, ok := kept[s]; ok != (i >= len(sizes)-maxInferenceGraphs) {
			t.Errorf("size %v kept: %v, want only the last %d sizes", s, ok, maxInferenceGraphs)
		}
	}
	// Using the oldest kept shape makes the next-oldest the one to go.
	oldest, next := sizes[len(sizes)-maxInferenceGraphs], sizes[len(sizes)-maxInferenceGraphs+1]
	g := kept[oldest]
	forward(oldest)
	if inferenceGraphs(n)[oldest] != g {
		t.Error("a kept graph was rebuilt")
	}
	if y := forward(sizes[0]); !slices.Equal(y, first[sizes[0]]) {
		t.Error("a rebuilt graph gives other logits")
	}
	now := inferenceGraphs(n)
	if _, ok := now[next]; ok {
		t.Errorf("size %v, the least recently used, was kept", next)
	}
	if _, ok := now[oldest]; !ok {
		t.Errorf("size %v, used just before, was evicted", oldest)
	}
}

// When the engine's memory is full, building a graph frees the others and
// tries again: two shapes that do not fit together still run one after the
// other, with the results of an engine without a limit.
func TestGraphsFreedWhenMemoryRunsOut(t *testing.T) {
	cfg := tinyConfig(ModeUniversal, UpsampleTranspose)
	cfg.BaseChannels = 4
	m, err := New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domains[1]
	sizes := [][3]int{{8, 32, 32}, {8, 40, 36}}
	r := rand.New(rand.NewPCG(4, 4))
	var inputs, want [][]float32
	var limit uint64
	free := opstest.GPU(t, vk.Options{})
	for _, s := range sizes {
		x, _ := tinyBatch(r, d, 1, s)
		inputs = append(inputs, x)
		// Alone on a fresh net: the peak memory this shape needs.
		n, err := NewNet(m, free)
		if err != nil {
			t.Fatal(err)
		}
		free.Device().ResetPeakMemory()
		y, err := n.Probabilities(1, 1, s, x)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, y)
		_, peak := free.Device().MemoryInUse()
		limit = max(limit, peak)
		n.Close()
		if err := free.Sync(); err != nil { // releases the net's memory
			t.Fatal(err)
		}
	}
	a, _ := NewNet(m, free)
	defer a.Close()
	both, _ := free.Device().MemoryInUse() // the parameters
	for _, s := range sizes {
		b, err := a.PlanBytes(1, 1, s, false)
		if err != nil {
			t.Fatal(err)
		}
		both += uint64(b)
	}
	limit += limit / 10 // room for fragmentation, short of both graphs
	if both <= limit {
		t.Fatalf("test set-up: both graphs with the parameters (%d bytes) fit under the limit of %d bytes", both, limit)
	}
	g := opstest.GPU(t, vk.Options{MemoryLimit: limit})
	n, err := NewNet(m, g)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// A shape too large fails with ErrOutOfMemory and leaves no memory
	// held, so that a smaller one can be tried.
	before, _ := g.Device().MemoryInUse()
	if err := n.ReserveInference(1, 2, sizes[1]); !errors.Is(err, ops.ErrOutOfMemory) {
		t.Fatalf("reserving batch 2 of %v under a limit of %d bytes: %v, want ErrOutOfMemory", sizes[1], limit, err)
	}
	if after, _ := g.Device().MemoryInUse(); after != before {
		t.Errorf("a failed reservation left %d bytes in use, %d before", after, before)
	}
	for round := range 2 {
		for i, s := range sizes {
			y, err := n.Probabilities(1, 1, s, inputs[i])
			if err != nil {
				t.Fatalf("round %d, size %v under a limit of %d bytes: %v", round, s, limit, err)
			}
			if !slices.Equal(y, want[i]) {
				t.Errorf("round %d, size %v: probabilities differ from those without a limit", round, s)
			}
			if got := len(n.graphs); got != 1 {
				t.Errorf("round %d, size %v: %d graphs kept, want 1", round, s, got)
			}
		}
	}
}

// An inference graph shares buffers between activations whose lives do not
// overlap, yet computes the same logits, bit for bit, as a training graph,
// which keeps every activation: in each mode, with either up-sampling, with
// and without the residual connections and deep supervision, on both
// engines.
func TestInferenceGraphSharesBuffers(t *testing.T) {
	engines := []struct {
		name string
		e    ops.Engine
	}{{"cpu", ops.NewCPU()}, {"gpu", openGPU(t)}}
	size := [3]int{4, 16, 12}
	for _, eng := range engines {
		for _, c := range []struct {
			mode, up    string
			res, ds     bool
			base, pools int
		}{
			{ModeUniversal, UpsampleTranspose, true, true, 4, 2},
			{ModeUniversal, UpsampleNearest, false, false, 3, 2},
			{ModeShared, UpsampleTranspose, true, false, 2, 2},
			{ModeIndependent, UpsampleNearest, false, true, 2, 2},
		} {
			name := fmt.Sprintf("%s/%s-%s-res%t-ds%t", eng.name, c.mode, c.up, c.res, c.ds)
			cfg := tinyConfig(c.mode, c.up)
			cfg.Residual, cfg.DeepSupervision, cfg.BaseChannels = c.res, c.ds, c.base
			m, err := New(cfg, 2)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(6, 6))
			d := cfg.Domains[1]
			x, l := tinyBatch(r, d, 2, size)
			shared, err := NewNet(m, eng.e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := shared.Forward(1, 2, size, x)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			inferBytes, _ := shared.PlanBytes(1, 2, size, false)
			var actBytes int64
			for _, a := range shared.graphs[graphKey{1, 2, size, false}].acts {
				actBytes += 4 * int64(a.len(2))
			}
			shared.Close()
			if inferBytes > actBytes*2/3 {
				t.Errorf("%s: the inference graph holds %d bytes of its activations' %d", name, inferBytes, actBytes)
			}
			full, err := NewNet(m, eng.e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := full.Gradients(1, 2, size, x, l); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want, err := full.Forward(1, 2, size, x) // on the training graph
			full.Close()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: the inference graph's logits differ from the training graph's", name)
			}
		}
	}
}

// poolBytes is what the net's training graphs hold together.
func poolBytes(n *Net) int64 {
	var b int64
	for length, list := range n.trainBufs.bufs {
		b += 4 * int64(length) * int64(len(list))
	}
	return b
}

// Domains that take turns share their training graphs' buffers: the steps
// give the same bits as graphs built afresh for every step, and the three
// domains' graphs hold little more than one domain's plan.
func TestDomainsShareTrainingBuffers(t *testing.T) {
	cfg := tinyConfig(ModeUniversal, UpsampleTranspose)
	cfg.Domains = append(cfg.Domains, Domain{Name: "us", InChannels: 1, Classes: 2})
	order := []int{0, 1, 2, 0, 2, 1, 1, 0}
	for _, ec := range []struct {
		name string
		open func() ops.Engine
	}{
		{"cpu", func() ops.Engine { return ops.NewCPU() }},
		{"gpu", func() ops.Engine { return opstest.GPU(t, vk.Options{}) }},
	} {
		t.Run(ec.name, func(t *testing.T) {
			var runs [2]*Model
			var losses [2][]Losses
			for k := range runs {
				m, err := New(cfg, 5)
				if err != nil {
					t.Fatal(err)
				}
				n, err := NewNet(m, ec.open())
				if err != nil {
					t.Fatal(err)
				}
				n.DeepSupervisionLoss = true
				r := rand.New(rand.NewPCG(8, 8))
				var most int64
				for _, dom := range order {
					if k == 1 {
						// Graphs built afresh: no buffer of another step.
						if err := n.freeGraphsExcept(nil); err != nil {
							t.Fatal(err)
						}
					}
					x, l := tinyBatch(r, cfg.Domains[dom], 2, tinySize)
					loss, err := n.TrainStep(dom, 2, tinySize, x, l)
					if err != nil {
						t.Fatalf("domain %d: %v", dom, err)
					}
					losses[k] = append(losses[k], loss)
					b, err := n.PlanBytes(dom, 2, tinySize, true)
					if err != nil {
						t.Fatal(err)
					}
					most = max(most, b)
				}
				if k == 0 {
					if got := poolBytes(n); got > most*6/5 {
						t.Errorf("the training graphs of 3 domains hold %d bytes, one domain's plan %d", got, most)
					}
				}
				if err := n.Pull(); err != nil {
					t.Fatal(err)
				}
				n.Close()
				if got := poolBytes(n); got != 0 {
					t.Errorf("a closed net still holds %d bytes of training buffers", got)
				}
				runs[k] = m
			}
			if !slices.Equal(losses[0], losses[1]) {
				t.Errorf("losses with shared buffers %v, with fresh graphs %v", losses[0], losses[1])
			}
			for _, p := range runs[0].Params {
				sameValues(t, p.Name, runs[0].Values[p.Name], runs[1].Values[p.Name])
			}
		})
	}
}

// FreeGraphs returns a net to its parameters' memory (and the engine's
// scratch buffers, which persist), and the next pass builds its graph again
// with the same result.
func TestFreeGraphs(t *testing.T) {
	cfg := tinyConfig(ModeUniversal, UpsampleTranspose)
	g := opstest.GPU(t, vk.Options{})
	n := newTestNet(t, cfg, 5, g)
	size := [3]int{8, 16, 16}
	x, _ := tinyBatch(rand.New(rand.NewPCG(5, 5)), cfg.Domains[0], 1, size)
	var want []float32
	var base uint64
	for round := range 3 {
		got, err := n.Probabilities(0, 1, size, x)
		if err != nil {
			t.Fatal(err)
		}
		held, _ := g.Device().MemoryInUse()
		if err := n.FreeGraphs(); err != nil {
			t.Fatal(err)
		}
		used, _ := g.Device().MemoryInUse()
		if len(n.graphs) != 0 || used >= held || (round > 0 && used != base) {
			t.Errorf("round %d: %d graphs and %d bytes in use after FreeGraphs, %d before; want none and %d", round, len(n.graphs), used, held, base)
		}
		if round == 0 {
			want, base = got, used
		} else if !slices.Equal(got, want) {
			t.Errorf("round %d: probabilities after FreeGraphs differ", round)
		}
	}
}
