package augment

import (
	"bytes"
	"math"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/sample"
)

// labelCase returns a case with nested boxes of labels 1..3 and an image
// that is 10 × the label (channel 0) and −10 × the label (channel 1).
func labelCase(shape [3]int) *preprocess.Case {
	n := shape[0] * shape[1] * shape[2]
	c := &preprocess.Case{ID: "boxes", Shape: [4]int{2, shape[0], shape[1], shape[2]}, Image: make([]float32, 2*n), Label: make([]uint8, n)}
	for z := range shape[0] {
		for y := range shape[1] {
			for x := range shape[2] {
				i := (z*shape[1]+y)*shape[2] + x
				var l uint8
				switch {
				case z > 10 && z < 22 && y > 6 && y < 20 && x > 8 && x < 28:
					l = 2
					if x > 14 && x < 20 && y > 10 {
						l = 3
					}
				case z > 3 && z < 26 && y > 2 && y < 26 && x > 3 && x < 34:
					l = 1
				}
				c.Label[i] = l
				c.Image[i], c.Image[n+i] = 10*float32(l), -10*float32(l)
			}
		}
	}
	return c
}

// agreement returns the share of voxels where the image still says the
// label (|image − 10·label| < 5).
func agreement(p sample.Patch) float64 {
	ok := 0
	for i, l := range p.Label {
		if math.Abs(float64(p.Image[i])-10*float64(l)) < 5 {
			ok++
		}
	}
	return float64(ok) / float64(len(p.Label))
}

func TestSpatialKeepsAlignment(t *testing.T) {
	c := labelCase([3]int{30, 30, 40})
	size := [3]int{16, 20, 24}
	p := Params{
		RotateProb: 1, RotateMax: [3]float64{math.Pi, math.Pi, math.Pi},
		ScaleProb: 1, ScaleRange: [2]float64{0.7, 1.4},
		MirrorProb: 0.5, MirrorAxes: [3]bool{true, true, true},
		ElasticProb: 0.5, ElasticMagnitude: 3, ElasticSpacing: 8,
	}
	centre := [3]float64{15, 14, 19}
	for k := range 20 {
		rng := sample.Rand(11, uint64(k))
		tr := Draw(rng, p, size, centre)
		out := tr.Apply(c, size)
		if a := agreement(out); a < 0.93 {
			t.Fatalf("transform %d: image and label agree on %.3f of the voxels", k, a)
		}
		// The second channel went through the same transform.
		pn := len(out.Label)
		for i := range pn {
			if out.Image[pn+i] != -out.Image[i] {
				t.Fatalf("transform %d: channels differ at %d", k, i)
			}
		}
		// A label one voxel off is detectably worse: the test can see
		// misalignment.
		shifted := out
		shifted.Label = append([]uint8(nil), out.Label[size[2]*size[1]:]...)
		shifted.Label = append(shifted.Label, make([]uint8, size[2]*size[1])...)
		if agreement(shifted) >= agreement(out) {
			t.Fatalf("transform %d: a misaligned label agrees as well (%.3f vs %.3f)", k, agreement(shifted), agreement(out))
		}
	}
}

func TestIdentityAndMirror(t *testing.T) {
	c := labelCase([3]int{30, 30, 40})
	size := [3]int{10, 12, 14}
	loc := sample.Location{Start: [3]int{5, 7, 9}}
	want := sample.Extract(c, loc, size)
	// The general path with the identity equals plain extraction.
	var centre [3]float64
	for a := range 3 {
		centre[a] = float64(loc.Start[a]) + float64(size[a]-1)/2
	}
	got := Draw(sample.Rand(1), Params{}, size, centre).Apply(c, size)
	if !reflect.DeepEqual(got.Image, want.Image) || !reflect.DeepEqual(got.Label, want.Label) {
		t.Fatal("identity transform differs from extraction")
	}
	// Mirroring all axes through the fast path equals the general path.
	p := Params{MirrorProb: 1, MirrorAxes: [3]bool{true, true, true}}
	fast := Patch(sample.Rand(2), p, c, loc, size)
	tr := Draw(sample.Rand(2), p, size, centre)
	if !tr.isMirror(size) {
		t.Fatal("mirror transform not recognised")
	}
	slow := tr.Apply(c, size)
	if !reflect.DeepEqual(fast.Image, slow.Image) || !reflect.DeepEqual(fast.Label, slow.Label) {
		t.Fatal("mirror fast path differs from the general path")
	}
	if reflect.DeepEqual(fast.Label, want.Label) {
		t.Fatal("mirroring changed nothing")
	}
}

// TestFlip mirrors random patches of odd and even sizes along each axis:
// every channel and the label map the voxel (z, y, x) to the mirrored
// coordinate.
func TestFlip(t *testing.T) {
	rng := sample.Rand(3)
	for _, shape := range [][4]int{{1, 1, 1, 1}, {2, 5, 4, 3}, {3, 6, 7, 2}, {1, 2, 9, 8}} {
		nc, d, h, w := shape[0], shape[1], shape[2], shape[3]
		vn := d * h * w
		orig := sample.Patch{Shape: shape, Image: make([]float32, nc*vn), Label: make([]uint8, vn)}
		for i := range orig.Image {
			orig.Image[i] = float32(rng.NormFloat64())
		}
		for i := range orig.Label {
			orig.Label[i] = uint8(rng.IntN(256))
		}
		for a := range 3 {
			got := sample.Patch{Shape: shape, Image: slices.Clone(orig.Image), Label: slices.Clone(orig.Label)}
			flip(&got, a)
			for z := range d {
				for y := range h {
					for x := range w {
						m := [3]int{z, y, x}
						m[a] = [3]int{d, h, w}[a] - 1 - m[a]
						i, j := (z*h+y)*w+x, (m[0]*h+m[1])*w+m[2]
						if got.Label[i] != orig.Label[j] {
							t.Fatalf("shape %v axis %d: label at %v is the original's at %v", shape, a, [3]int{z, y, x}, m)
						}
						for ch := range nc {
							if got.Image[ch*vn+i] != orig.Image[ch*vn+j] {
								t.Fatalf("shape %v axis %d channel %d: image at %v is not the original's at %v", shape, a, ch, [3]int{z, y, x}, m)
							}
						}
					}
				}
			}
		}
	}
}

func TestIntensity(t *testing.T) {
	c := labelCase([3]int{30, 30, 40})
	size := [3]int{16, 16, 16}
	base := sample.Extract(c, sample.Location{Start: [3]int{8, 8, 12}}, size)
	p := base
	p.Image = append([]float32(nil), base.Image...)
	Intensity(sample.Rand(5), Params{GammaProb: 1, GammaRange: [2]float64{1.5, 1.5}}, &p)
	pn := len(base.Label)
	m0, s0 := meanSD(base.Image[:pn])
	m1, s1 := meanSD(p.Image[:pn])
	if math.Abs(m0-m1) > 1e-3 || math.Abs(s0-s1) > 1e-3 {
		t.Errorf("gamma changed mean/sd from %v/%v to %v/%v", m0, s0, m1, s1)
	}
	if reflect.DeepEqual(p.Image, base.Image) {
		t.Error("gamma changed nothing")
	}
	q := base
	q.Image = append([]float32(nil), base.Image...)
	Intensity(sample.Rand(5), Params{NoiseProb: 1, NoiseStd: 1}, &q)
	var diff float64
	for i := range q.Image {
		diff += math.Abs(float64(q.Image[i] - base.Image[i]))
	}
	if diff == 0 || !reflect.DeepEqual(q.Label, base.Label) {
		t.Error("noise added nothing or touched the label")
	}
}

func meanSD(v []float32) (float64, float64) {
	var m float64
	for _, x := range v {
		m += float64(x)
	}
	m /= float64(len(v))
	return m, stddev(v, m)
}

func newTestLoader(t *testing.T) *Loader {
	t.Helper()
	s, err := sample.New([]*preprocess.Case{labelCase([3]int{30, 30, 40}), labelCase([3]int{30, 30, 40})}, [3]int{12, 12, 12}, sample.Options{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultParams()
	p.ElasticProb = 0.3
	l, err := NewLoader(s, LoaderConfig{BatchSize: 3, Params: p, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLoaderDeterministic builds the same steps in turn and all at once,
// in reverse order: a batch depends on its step alone.
func TestLoaderDeterministic(t *testing.T) {
	l := newTestLoader(t)
	const first, n = 5, 8
	var inTurn [n]Batch
	for i := range n {
		inTurn[i] = l.Batch(first + i)
	}
	var together [n]Batch
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		wg.Go(func() { together[i] = l.Batch(first + i) })
	}
	wg.Wait()
	for i := range n {
		if inTurn[i].Step != first+i || !reflect.DeepEqual(inTurn[i], together[i]) {
			t.Fatalf("batch %d differs between building in turn and at once (steps %d, %d)", i, inTurn[i].Step, together[i].Step)
		}
	}
	if reflect.DeepEqual(inTurn[0].Image, inTurn[1].Image) {
		t.Fatal("two steps drew the same batch")
	}
	a := inTurn[0]
	if a.Shape != [5]int{3, 2, 12, 12, 12} || len(a.Image) != 3*2*12*12*12 || len(a.Label) != 3*12*12*12 {
		t.Fatalf("batch shape %v", a.Shape)
	}
	for _, l := range a.Label {
		if l > 3 {
			t.Fatalf("label %d not in the case", l)
		}
	}
}

// BatchInto into the buffers of an earlier batch, poisoned, gives Batch's
// bits: every voxel of the reused image and labels is written, with zeros
// where the patch reaches past the case. The patches are extracted and
// mirrored (the case shorter than the patch along D) or resampled.
func TestBatchIntoReuses(t *testing.T) {
	s, err := sample.New([]*preprocess.Case{labelCase([3]int{8, 20, 24}), labelCase([3]int{14, 16, 18})}, [3]int{12, 12, 12}, sample.Options{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	extract, resample := DefaultParams(), DefaultParams()
	extract.RotateProb, extract.ScaleProb, extract.ElasticProb = 0, 0, 0
	resample.RotateProb, resample.ElasticProb = 1, 0.5
	for name, p := range map[string]Params{"extracted": extract, "resampled": resample} {
		t.Run(name, func(t *testing.T) {
			l, err := NewLoader(s, LoaderConfig{BatchSize: 2, Params: p, Seed: 6})
			if err != nil {
				t.Fatal(err)
			}
			var b Batch
			l.BatchInto(0, &b)
			image, label := &b.Image[0], &b.Label[0]
			for step := 1; step < 6; step++ {
				for i := range b.Image {
					b.Image[i] = float32(math.NaN())
				}
				for i := range b.Label {
					b.Label[i] = 0xFF
				}
				l.BatchInto(step, &b)
				want := l.Batch(step)
				if b.Step != step || b.Shape != want.Shape || !reflect.DeepEqual(b.Locations, want.Locations) {
					t.Fatalf("step %d: batch %d of shape %v, want %d of %v", step, b.Step, b.Shape, want.Step, want.Shape)
				}
				for i := range want.Image {
					if math.Float32bits(b.Image[i]) != math.Float32bits(want.Image[i]) {
						t.Fatalf("step %d: image value %d = %v, want %v", step, i, b.Image[i], want.Image[i])
					}
				}
				if !bytes.Equal(b.Label, want.Label) {
					t.Fatalf("step %d: labels differ from a new batch's", step)
				}
			}
			if &b.Image[0] != image || &b.Label[0] != label {
				t.Error("BatchInto allocated new slices where the batch's had room")
			}
		})
	}
}

func TestNewLoaderErrors(t *testing.T) {
	s, _ := sample.New([]*preprocess.Case{labelCase([3]int{30, 30, 40})}, [3]int{4, 4, 4}, sample.Options{})
	if _, err := NewLoader(s, LoaderConfig{}); err == nil {
		t.Error("batch size 0 accepted")
	}
}

func BenchmarkPatch128(b *testing.B) {
	c := labelCase([3]int{160, 160, 160})
	c.Shape[0] = 1
	c.Image = c.Image[:len(c.Label)]
	p := DefaultParams()
	p.RotateProb, p.ScaleProb = 1, 1
	size := [3]int{128, 128, 128}
	for i := 0; b.Loop(); i++ {
		Patch(sample.Rand(uint64(i)), p, c, sample.Location{Start: [3]int{16, 16, 16}}, size)
	}
}

// BenchmarkBatch128 builds the reference setting's batches (two 128³
// patches, the default transforms) as training draws them: a mix of plain
// mirrored extractions and resampled patches; in new slices each time, or
// in those of the batch before (BatchInto, as the trainer does).
func BenchmarkBatch128(b *testing.B) {
	c := labelCase([3]int{160, 160, 160})
	c.Shape[0] = 1
	c.Image = c.Image[:len(c.Label)]
	s, err := sample.New([]*preprocess.Case{c}, [3]int{128, 128, 128}, sample.Options{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewLoader(s, LoaderConfig{BatchSize: 2, Params: DefaultParams(), Seed: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("new", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			l.Batch(i)
		}
	})
	b.Run("reused", func(b *testing.B) {
		var batch Batch
		for i := 0; b.Loop(); i++ {
			l.BatchInto(i, &batch)
		}
	})
}

// TestParallelSameAsSerial resamples a patch large enough to be split over
// cores, with every transform on, on one core and on four: the voxels must
// agree bit for bit.
func TestParallelSameAsSerial(t *testing.T) {
	c := labelCase([3]int{50, 60, 64})
	p := DefaultParams()
	p.RotateProb, p.ScaleProb, p.ElasticProb, p.GammaProb, p.NoiseProb = 1, 1, 1, 1, 1
	loc := sample.Location{Start: [3]int{2, 3, 4}}
	size := [3]int{40, 48, 56}
	build := func(procs int) sample.Patch {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		return Patch(sample.Rand(7), p, c, loc, size)
	}
	serial, parallel := build(1), build(4)
	if !reflect.DeepEqual(serial, parallel) {
		t.Fatal("the patch resampled on four cores differs from the one on one core")
	}
	if a := agreement(serial); a < 0.5 {
		t.Fatalf("image and label agree on %.2f of the voxels", a)
	}
}
