package predict

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/u2net-vk/u2net/ops"
	"github.com/u2net-vk/u2net/u2net"
	"github.com/u2net-vk/u2net/u2net/nifti"
	"github.com/u2net-vk/u2net/u2net/preprocess"
)

// With no plan and no patch, prediction is one window over the whole volume
// and equals a plain forward pass followed by a softmax.
func TestWholeVolumeEqualsForward(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels = 2
	cfg.PoolsPerAxis = [3]int{1, 2, 2}
	cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 2, Classes: 3}}
	net := cpuNet(t, cfg, 3)
	shape := [4]int{2, 4, 8, 12} // already a multiple of the strides: no padding
	vol := randomVolume(rand.New(rand.NewPCG(1, 1)), shape)
	data := vol.Data
	out, err := Volume(context.Background(), net, 0, vol, Options{})
	if err != nil {
		t.Fatal(err)
	}
	logits, err := net.Forward(0, 1, [3]int{shape[1], shape[2], shape[3]}, data)
	if err != nil {
		t.Fatal(err)
	}
	vox := shape[1] * shape[2] * shape[3]
	for i := 0; i < vox; i++ {
		var mx float64 = math.Inf(-1)
		for k := 0; k < 3; k++ {
			mx = math.Max(mx, float64(logits[k*vox+i]))
		}
		var sum float64
		for k := 0; k < 3; k++ {
			sum += math.Exp(float64(logits[k*vox+i]) - mx)
		}
		best := 0
		for k := 0; k < 3; k++ {
			p := math.Exp(float64(logits[k*vox+i])-mx) / sum
			if d := math.Abs(p - float64(out.Probs[k*vox+i])); d > 1e-5 {
				t.Fatalf("voxel %d class %d: probability %v, softmax of the forward %v", i, k, out.Probs[k*vox+i], p)
			}
			if logits[k*vox+i] > logits[best*vox+i] {
				best = k
			}
		}
		if int(out.Labels[i]) != best {
			t.Fatalf("voxel %d: label %d, argmax of the forward %d", i, out.Labels[i], best)
		}
	}
	// A non-finite voxel would spread through the instance norms over
	// whole windows: it is refused, by name.
	for _, bad := range []float64{math.NaN(), math.Inf(1)} {
		data[1*vox+(1*shape[2]+2)*shape[3]+3] = float32(bad)
		_, err := Volume(context.Background(), net, 0, vol, Options{})
		if want := fmt.Sprintf("holds %v at channel 1 voxel [3 2 1] (x, y, z)", float32(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("image with %v: error %v, want one saying %q", bad, err, want)
		}
	}
	vol.Shape[0] = 1
	if _, err := Volume(context.Background(), net, 0, vol, Options{}); err == nil {
		t.Error("an image with the wrong channel count was accepted")
	}
}

// An ensemble averages its members' probabilities before the argmax; one
// member is plain prediction. Members must agree on the classes.
func TestEnsemble(t *testing.T) {
	cfg := u2net.DefaultConfig()
	cfg.BaseChannels = 2
	cfg.PoolsPerAxis = [3]int{1, 2, 2}
	cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 3}}
	other := cfg
	other.Domains = []u2net.Domain{{Name: "b", InChannels: 1, Classes: 3}, {Name: "a", InChannels: 1, Classes: 3}}
	fewer := cfg
	fewer.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 2}}
	var members []Member
	for i, c := range []u2net.Config{cfg, other, fewer} {
		members = append(members, Member{Net: cpuNet(t, c, uint64(10+i)), Dom: len(c.Domains) - 1})
	}
	vol := randomVolume(rand.New(rand.NewPCG(1, 2)), [4]int{1, 8, 16, 24})
	ctx := context.Background()
	var single [2]*Output
	for i := range single {
		out, err := Volume(ctx, members[i].Net, members[i].Dom, vol, Options{})
		if err != nil {
			t.Fatal(err)
		}
		single[i] = out
	}
	one, err := Ensemble(ctx, members[:1], vol, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Probs, single[0].Probs) || !slices.Equal(one.Labels, single[0].Labels) {
		t.Error("an ensemble of one differs from plain prediction")
	}
	two, err := Ensemble(ctx, members[:2], vol, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(two.Probs))
	for i := range want {
		want[i] = (single[0].Probs[i] + single[1].Probs[i]) * 0.5
	}
	if !slices.Equal(two.Probs, want) {
		t.Error("an ensemble of two is not the mean of its members' probabilities")
	}
	if !slices.Equal(two.Labels, argmax(want, 3)) || slices.Equal(two.Labels, single[0].Labels) {
		t.Error("the ensemble's labels are not the argmax of the mean (or the members agree everywhere)")
	}
	// Islands are removed from the final labels: the ensemble's, not its
	// members'.
	shape3 := [3]int{vol.Shape[1], vol.Shape[2], vol.Shape[3]}
	for _, c := range []struct {
		members []Member
		plain   []uint8
	}{{members[:1], single[0].Labels}, {members[:2], two.Labels}} {
		got, err := Ensemble(ctx, c.members, vol, Options{KeepLargest: []uint8{1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(c.plain)
		cleared, err := KeepLargestComponents(want, shape3, []uint8{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		if cleared == 0 || !slices.Equal(got.Labels, want) {
			t.Errorf("%d member(s) keeping the largest components: %d voxels cleared, labels as expected %t",
				len(c.members), cleared, slices.Equal(got.Labels, want))
		}
	}
	if _, err := Ensemble(ctx, members[:1], vol, Options{KeepLargest: []uint8{3}}); err == nil || !strings.Contains(err.Error(), "class 3") {
		t.Errorf("largest component of a class the domain lacks: %v", err)
	}
	if two.Windows != single[0].Windows+single[1].Windows {
		t.Errorf("%d windows, want %d", two.Windows, single[0].Windows+single[1].Windows)
	}
	if _, err := Ensemble(ctx, members, vol, Options{}); err == nil || !strings.Contains(err.Error(), "model 3 of the ensemble: domain a has 2 classes") {
		t.Errorf("members with other classes: %v", err)
	}
	if _, err := Ensemble(ctx, nil, vol, Options{}); err == nil {
		t.Error("an empty ensemble was accepted")
	}
}

// cpuNet returns a net of a new model of cfg on the reference engine,
// closed when the test ends.
func cpuNet(t *testing.T, cfg u2net.Config, seed uint64) *u2net.Net {
	t.Helper()
	m, err := u2net.New(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	net, err := u2net.NewNet(m, ops.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(net.Close)
	return net
}

// randomVolume returns a volume of shape [C, D, H, W] of N(0, 1) values
// with the identity affine.
func randomVolume(r *rand.Rand, shape [4]int) *nifti.Volume {
	data := make([]float32, shape[0]*shape[1]*shape[2]*shape[3])
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	return &nifti.Volume{Header: nifti.NewHeader(shape, nifti.Identity()), Shape: shape, Data: data}
}

// The planned largest components of an ensemble are those every member's
// plan lists; a member without a plan lists none.
func TestPlannedKeepLargest(t *testing.T) {
	member := func(keep []int, planned bool) Member {
		cfg := u2net.DefaultConfig()
		cfg.BaseChannels = 2
		cfg.PoolsPerAxis = [3]int{1, 1, 1}
		cfg.Domains = []u2net.Domain{{Name: "a", InChannels: 1, Classes: 4}}
		if planned {
			plan := preprocess.Plan{Version: preprocess.PlanVersion, Domain: "a", Modalities: []string{"MR"},
				TargetSpacing: [3]float64{1, 1, 1}, Normalization: []preprocess.ChannelNorm{{Scheme: preprocess.SchemeZScore}},
				Labels: []string{"bg", "x", "y", "z"}, KeepLargest: keep}
			b, err := json.Marshal(plan)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Domains[0].Plan = b
		}
		return Member{Net: cpuNet(t, cfg, 1), Dom: 0}
	}
	for _, c := range []struct {
		members []Member
		want    []uint8
	}{
		{[]Member{member([]int{1, 3}, true)}, []uint8{1, 3}},
		{[]Member{member([]int{1, 3}, true), member([]int{3, 2}, true)}, []uint8{3}},
		{[]Member{member(nil, true)}, nil},
		{[]Member{member([]int{1}, true), member(nil, false)}, nil},
	} {
		got, err := PlannedKeepLargest(c.members)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%d member(s): %v (%v), want %v", len(c.members), got, err, c.want)
		}
	}
}

// argmax over an image large enough to be split over cores picks, for
// every voxel, the first class of the highest probability.
func TestArgmaxLarge(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const n, classes = 200003, 3
	rng := rand.New(rand.NewPCG(7, 8))
	probs := make([]float32, classes*n)
	for i := range probs {
		probs[i] = float32(rng.IntN(4)) // ties too
	}
	got := argmax(probs, classes)
	for i := range n {
		want := 0
		for k := 1; k < classes; k++ {
			if probs[k*n+i] > probs[want*n+i] {
				want = k
			}
		}
		if int(got[i]) != want {
			t.Fatalf("voxel %d: class %d, want %d", i, got[i], want)
		}
	}
}
