package preprocess

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/nifti"
)

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	// numpy.percentile with the default linear method
	for _, c := range []struct{ q, want float64 }{{0, 1}, {50, 3}, {10, 1.4}, {99.5, 4.98}, {100, 5}, {0.5, 1.02}} {
		if got := percentile(v, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("percentile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if !slices.Equal(v, []float64{5, 1, 4, 2, 3}) {
		t.Error("percentile changed its input")
	}
}

func TestTargetSpacing(t *testing.T) {
	rep := func(s [3]float64, n int) [][3]float64 {
		out := make([][3]float64, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	sizes := func(s [3]int, n int) [][3]int {
		out := make([][3]int, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	cases := []struct {
		name     string
		spacings [][3]float64
		shapes   [][3]int
		want     [3]float64
		aniso    bool
	}{
		{"isotropic", rep([3]float64{1, 1, 1}, 3), sizes([3]int{50, 60, 70}, 3), [3]float64{1, 1, 1}, false},
		{"median per axis", [][3]float64{{2, 1, 1}, {3, 0.5, 0.9}, {2.5, 0.7, 0.8}}, sizes([3]int{50, 60, 70}, 3), [3]float64{2.5, 0.7, 0.9}, false},
		{"anisotropic spacing, many slices", rep([3]float64{5, 1, 1}, 3), sizes([3]int{40, 100, 100}, 3), [3]float64{5, 1, 1}, false},
		{"anisotropic spacing and few slices",
			[][3]float64{{5, 1, 1}, {4, 1, 1}, {6, 1, 1}, {3.5, 0.9, 0.9}, {5, 1, 1}},
			sizes([3]int{20, 200, 200}, 5),
			// 10th percentile of 3.5, 4, 5, 5, 6 is 3.7.
			[3]float64{3.7, 1, 1}, true},
		{"rule keeps the coarse axis above the others",
			[][3]float64{{0.5, 0.3, 0.5}, {0.5, 4, 0.5}, {0.5, 0.3, 0.5}, {0.5, 4.5, 0.5}, {0.5, 5, 0.5}},
			sizes([3]int{300, 20, 300}, 5),
			[3]float64{0.5, 0.5 + 1e-5, 0.5}, true},
	}
	for _, c := range cases {
		got, aniso := targetSpacing(c.spacings, c.shapes)
		for a := range 3 {
			if math.Abs(got[a]-c.want[a]) > 1e-9 {
				t.Errorf("%s: target %v, want %v", c.name, got, c.want)
				break
			}
		}
		if aniso != c.aniso {
			t.Errorf("%s: anisotropic=%v, want %v", c.name, aniso, c.aniso)
		}
	}
}

func TestResampleLinear(t *testing.T) {
	from := [3]int{6, 8, 10}
	ramp := make([]float32, 6*8*10)
	for z := range 6 {
		for y := range 8 {
			for x := range 10 {
				// linear in physical coordinates (voxel centres at i+0.5)
				ramp[(z*8+y)*10+x] = float32(2*(float64(z)+0.5) - 3*(float64(y)+0.5) + 0.5*(float64(x)+0.5))
			}
		}
	}
	for _, to := range [][3]int{{6, 8, 10}, {12, 16, 20}, {3, 4, 5}, {9, 5, 13}, {1, 1, 1}} {
		got, err := ResampleLinear(ramp, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != to[0]*to[1]*to[2] {
			t.Fatalf("%v: %d values", to, len(got))
		}
		// Interior output voxels (whose centres lie between input centres)
		// reproduce the ramp at their physical position.
		for z := range to[0] {
			for y := range to[1] {
				for x := range to[2] {
					p := [3]float64{(float64(z) + 0.5) * 6 / float64(to[0]), (float64(y) + 0.5) * 8 / float64(to[1]), (float64(x) + 0.5) * 10 / float64(to[2])}
					if p[0] < 0.5 || p[0] > 5.5 || p[1] < 0.5 || p[1] > 7.5 || p[2] < 0.5 || p[2] > 9.5 {
						continue
					}
					want := 2*p[0] - 3*p[1] + 0.5*p[2]
					if g := float64(got[(z*to[1]+y)*to[2]+x]); math.Abs(g-want) > 1e-4 {
						t.Fatalf("%v: voxel %d,%d,%d = %v, want %v", to, z, y, x, g, want)
					}
				}
			}
		}
	}
	if _, err := ResampleLinear(ramp, from, [3]int{0, 1, 1}); err == nil {
		t.Error("zero target size accepted")
	}
	if _, err := ResampleLinear(ramp[:10], from, from); err == nil {
		t.Error("short input accepted")
	}
}

// blobs returns a label map with three labelled boxes.
func blobs(s [3]int) []uint8 {
	l := make([]uint8, s[0]*s[1]*s[2])
	for z := range s[0] {
		for y := range s[1] {
			for x := range s[2] {
				i := (z*s[1]+y)*s[2] + x
				switch {
				case z >= 2 && z < 6 && y >= 2 && y < 8 && x >= 3 && x < 9:
					l[i] = 1
				case z >= 8 && y >= 10 && x >= 12:
					l[i] = 2
				case z < 4 && y >= 12 && x < 4:
					l[i] = 3
				}
			}
		}
	}
	return l
}

func labelSet(l []uint8) []uint8 {
	var s []uint8
	for _, v := range l {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	slices.Sort(s)
	return s
}

func TestResampleKeepsExtentAndLabels(t *testing.T) {
	from := [3]int{12, 16, 20}
	spacing := [3]float64{3, 0.8, 0.8}
	lab := blobs(from)
	for _, target := range [][3]float64{{1.5, 1, 1}, {3, 1.6, 1.6}, {1, 0.5, 0.7}, {4, 1.2, 0.9}} {
		to := ResampledShape(from, spacing, target)
		for a := range 3 {
			ext, got := float64(from[a])*spacing[a], float64(to[a])*target[a]
			// Rounding to whole voxels moves an edge by at most half a voxel.
			if math.Abs(ext-got) > target[a]/2+1e-9 {
				t.Errorf("target %v: axis %d extent %v mm, resampled %v mm", target, a, ext, got)
			}
		}
		r, err := ResampleNearest(lab, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(labelSet(r), labelSet(lab)) {
			t.Errorf("target %v: labels %v, want %v", target, labelSet(r), labelSet(lab))
		}
		back, err := ResampleNearest(r, to, from)
		if err != nil {
			t.Fatal(err)
		}
		// A coarser grid loses detail of the small box, but not its place.
		if d := dice(back, lab, 1); d < 0.6 {
			t.Errorf("target %v: Dice of label 1 after a round trip = %.3f", target, d)
		}
	}
}

func dice(a, b []uint8, class uint8) float64 {
	var inter, na, nb int
	for i := range a {
		if a[i] == class {
			na++
		}
		if b[i] == class {
			nb++
		}
		if a[i] == class && b[i] == class {
			inter++
		}
	}
	return 2 * float64(inter) / float64(na+nb)
}

// caseSpec describes one synthetic case for makeDataset.
type caseSpec struct {
	shape   [3]int // D, H, W
	spacing [3]float64
}

// makeDataset writes a dataset whose images are zero outside a box one
// voxel in from each border, with the given modality; the image is a
// noise-free pattern: background 100 inside the box, 300 + x inside label 1.
func makeDataset(t *testing.T, modality string, specs []caseSpec) *dataset.Dataset {
	t.Helper()
	root := t.TempDir()
	var training []map[string]string
	for i, s := range specs {
		n := s.shape[0] * s.shape[1] * s.shape[2]
		img := make([]float32, n)
		lab := make([]float32, n)
		for z := range s.shape[0] {
			for y := range s.shape[1] {
				for x := range s.shape[2] {
					j := (z*s.shape[1]+y)*s.shape[2] + x
					if z < 1 || y < 1 || x < 1 || z >= s.shape[0]-1 || y >= s.shape[1]-1 || x >= s.shape[2]-1 {
						continue
					}
					img[j] = 100
					if z >= s.shape[0]/3 && z < 2*s.shape[0]/3 && y >= 2 && y < 6 && x >= 2 && x < 7 {
						img[j] = 300 + float32(x)
						lab[j] = 1
					}
				}
			}
		}
		aff := nifti.Identity()
		aff[0][0], aff[1][1], aff[2][2] = s.spacing[2], s.spacing[1], s.spacing[0]
		shape := [4]int{1, s.shape[0], s.shape[1], s.shape[2]}
		id := "c" + string(rune('a'+i))
		for _, f := range []struct {
			dir  string
			data []float32
			dt   nifti.Datatype
		}{{"imagesTr", img, nifti.Int16}, {"labelsTr", lab, nifti.Uint8}} {
			os.MkdirAll(filepath.Join(root, f.dir), 0o755)
			v := &nifti.Volume{Header: nifti.NewHeader(shape, aff), Shape: shape, Data: f.data}
			if err := nifti.WriteFile(filepath.Join(root, f.dir, id+".nii.gz"), v, f.dt); err != nil {
				t.Fatal(err)
			}
		}
		training = append(training, map[string]string{"image": "./imagesTr/" + id + ".nii.gz", "label": "./labelsTr/" + id + ".nii.gz"})
	}
	desc := map[string]any{"name": "Toy" + modality, "modality": map[string]string{"0": modality},
		"labels": map[string]string{"0": "background", "1": "organ"}, "numTraining": len(specs), "training": training}
	b, _ := json.Marshal(desc)
	os.WriteFile(filepath.Join(root, "dataset.json"), b, 0o644)
	d, err := dataset.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var threeCases = []caseSpec{
	{[3]int{10, 12, 14}, [3]float64{2, 1, 1}},
	{[3]int{12, 12, 12}, [3]float64{3, 1, 1}},
	{[3]int{9, 10, 16}, [3]float64{2.5, 0.8, 1.2}},
}

func TestPlanCT(t *testing.T) {
	ds := makeDataset(t, "CT", threeCases)
	p, err := NewPlan(ds, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.TargetSpacing != [3]float64{2.5, 1, 1} || p.Anisotropic {
		t.Errorf("target spacing %v anisotropic %v", p.TargetSpacing, p.Anisotropic)
	}
	n := p.Normalization[0]
	// Foreground intensities are 302..306.
	if n.Scheme != SchemeCT || n.ClipLow < 302 || n.ClipLow > 302.1 || n.ClipHigh < 305.9 || n.ClipHigh > 306 || math.Abs(n.Mean-304) > 0.01 {
		t.Errorf("CT normalisation %+v", n)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// The plan survives JSON (it is stored in the model file).
	b, _ := json.Marshal(p)
	var q Plan
	if err := json.Unmarshal(b, &q); err != nil || !reflect.DeepEqual(*p, q) {
		t.Fatalf("JSON round trip: %v\n%+v\n%+v", err, *p, q)
	}
	s, err := ds.Load(ds.Training[1])
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Apply(s)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Geometry
	if g.Crop != (Box{Lo: [3]int{1, 1, 1}, Hi: [3]int{11, 11, 11}}) {
		t.Errorf("crop %+v", g.Crop)
	}
	// 10 slices of 3 mm become 12 of 2.5 mm.
	if g.Resampled != [3]int{12, 10, 10} || c.Shape != [4]int{1, 12, 10, 10} {
		t.Errorf("resampled %v shape %v", g.Resampled, c.Shape)
	}
	lo, hi := float32((n.ClipLow-n.Mean)/n.Std), float32((n.ClipHigh-n.Mean)/n.Std)
	for i, v := range c.Image {
		if v < lo-1e-5 || v > hi+1e-5 {
			t.Fatalf("voxel %d = %v outside the clipped range [%v, %v]", i, v, lo, hi)
		}
	}
	c2, _ := p.Apply(s)
	if !reflect.DeepEqual(c, c2) {
		t.Error("Apply is not deterministic")
	}
	// Undo: the restored label map matches the original closely, and
	// exactly outside the crop box.
	back, err := RestoreLabels(c.Label, g)
	if err != nil {
		t.Fatal(err)
	}
	if d := dice(back, s.Label, 1); d < 0.85 {
		t.Errorf("restored label Dice %.3f", d)
	}
	probs := make([]float32, 2*len(c.Label))
	for i, l := range c.Label {
		probs[int(l)*len(c.Label)+i] = 1
	}
	pb, err := RestoreProbabilities(probs, 2, g)
	if err != nil {
		t.Fatal(err)
	}
	nv := len(s.Label)
	if len(pb) != 2*nv || pb[0] != 1 || pb[nv] != 0 {
		t.Fatalf("restored probabilities: %d values, corner %v/%v", len(pb), pb[0], pb[nv])
	}
	for i := range nv {
		if math.Abs(float64(pb[i]+pb[nv+i])-1) > 1e-5 {
			t.Fatalf("voxel %d: probabilities sum to %v", i, pb[i]+pb[nv+i])
		}
	}
}

func TestPlanZScoreAndExactInverse(t *testing.T) {
	same := []caseSpec{{[3]int{8, 10, 12}, [3]float64{1, 1, 1}}, {[3]int{8, 10, 12}, [3]float64{1, 1, 1}}}
	ds := makeDataset(t, "MRI", same)
	p, err := NewPlan(ds, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Normalization[0].Scheme != SchemeZScore {
		t.Fatalf("normalisation %+v", p.Normalization)
	}
	s, _ := ds.Load(ds.Training[0])
	c, err := p.Apply(s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Shape != [4]int{1, 6, 8, 10} {
		t.Fatalf("shape %v", c.Shape)
	}
	var sum, sq float64
	for _, v := range c.Image {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(c.Image))
	if math.Abs(sum/n) > 1e-5 || math.Abs(sq/n-1) > 1e-4 {
		t.Errorf("z-score: mean %v, mean square %v", sum/n, sq/n)
	}
	// Same spacing: crop and un-crop is exact.
	back, err := RestoreLabels(c.Label, c.Geometry)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, s.Label) {
		t.Error("crop/un-crop of the label is not exact")
	}
	// A plan of the wrong channel count is refused.
	p.Modalities = append(p.Modalities, "T2")
	p.Normalization = append(p.Normalization, ChannelNorm{Scheme: SchemeZScore})
	if _, err := p.Apply(s); err == nil {
		t.Error("channel mismatch accepted")
	}
}

func TestValidate(t *testing.T) {
	good := Plan{Version: PlanVersion, Domain: "d", Modalities: []string{"CT"}, TargetSpacing: [3]float64{1, 1, 1},
		Labels: []string{"background", "liver", "tumour"}, KeepLargest: []int{1, 2},
		Normalization: []ChannelNorm{{Scheme: SchemeCT, ClipLow: -100, ClipHigh: 200, Mean: 50, Std: 20}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(p *Plan){
		func(p *Plan) { p.KeepLargest = []int{0} },
		func(p *Plan) { p.KeepLargest = []int{3} },
		func(p *Plan) { p.Version = 7 },
		func(p *Plan) { p.TargetSpacing[1] = 0 },
		func(p *Plan) { p.TargetSpacing[2] = math.NaN() },
		func(p *Plan) { p.Normalization = nil },
		func(p *Plan) { p.Normalization[0].Scheme = "minmax" },
		func(p *Plan) { p.Normalization[0].Std = 0 },
	}
	for i, f := range bad {
		p := good
		p.Normalization = slices.Clone(good.Normalization)
		f(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("bad plan %d accepted", i)
		}
	}
}

func TestCache(t *testing.T) {
	ds := makeDataset(t, "CT", threeCases)
	p, err := NewPlan(ds, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := ds.Training[0]
	first, err := p.Load(ds, c, dir)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.u2p"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	// A second load is served from the cache: corrupting the source image
	// (while keeping its size and time stamp) goes unnoticed.
	st, _ := os.Stat(c.Image)
	os.WriteFile(c.Image, make([]byte, st.Size()), 0o644)
	os.Chtimes(c.Image, st.ModTime(), st.ModTime())
	second, err := p.Load(ds, c, dir)
	if err != nil {
		t.Fatalf("cached load: %v", err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatal("cached case differs")
	}
	// A changed time stamp changes the key: the case is recomputed (and
	// now fails, since the image is zeros).
	os.Chtimes(c.Image, st.ModTime(), st.ModTime().Add(time.Second))
	if _, err := p.Load(ds, c, dir); err == nil {
		t.Fatal("changed input served from the cache")
	}
	// A changed plan changes the key.
	c1 := ds.Training[1]
	k1, _ := p.Key(c1)
	q := *p
	q.TargetSpacing[0] = 2
	k2, _ := q.Key(c1)
	if k1 == k2 {
		t.Fatal("plan change kept the key")
	}
	// Entries under old keys are replaced, and corrupt entries recomputed.
	if _, err := p.Load(ds, c1, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Load(ds, c1, dir); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*", "cb-*.u2p"))
	if len(old) != 1 {
		t.Fatalf("entries of cb: %v", old)
	}
	os.WriteFile(old[0], []byte(cacheMagic+"garbage"), 0o644)
	got, err := q.Load(ds, c1, dir)
	if err != nil || got.ID != "cb" {
		t.Fatalf("corrupt entry: %v", err)
	}
	// LoadAll keeps the order and reports the failing case.
	all, err := p.LoadAll(context.Background(), ds, ds.Training[1:], dir, 2)
	if err != nil || len(all) != 2 || all[0].ID != "cb" || all[1].ID != "cc" {
		t.Fatalf("LoadAll: %v", err)
	}
	if _, err := p.LoadAll(context.Background(), ds, ds.Training, dir, 2); err == nil {
		t.Fatal("LoadAll hid an error")
	}
}

// Cache files of IDs of every length round-trip exactly, with the image
// aligned for mapping; a case read back may be written to without changing
// the file, and a file with a flipped byte is refused.
func TestCacheFileLayout(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 9; n++ {
		c := &Case{ID: strings.Repeat("x", n), Shape: [4]int{2, 3, 4, 5}, Image: make([]float32, 2*60), Label: make([]uint8, 60),
			Geometry: Geometry{Shape: [3]int{3, 4, 5}}}
		for i := range c.Image {
			c.Image[i] = float32(rng.NormFloat64())
		}
		for i := range c.Label {
			c.Label[i] = uint8(rng.IntN(4))
		}
		path := filepath.Join(dir, c.ID+".u2p")
		if err := writeCache(path, c); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		if off := len(cacheMagic) + 4 + int(binary.LittleEndian.Uint32(raw[len(cacheMagic):])); off%cacheAlign != 0 {
			t.Errorf("ID of %d bytes: image at offset %d", n, off)
		}
		// Decoded in place: the image is a view of the file's bytes.
		off := len(cacheMagic) + 4 + int(binary.LittleEndian.Uint32(raw[len(cacheMagic):]))
		buf := slices.Clone(raw)
		view, err := decodeCache(buf, path)
		if err != nil {
			t.Fatal(err)
		}
		if hostLittleEndian && unsafe.Pointer(unsafe.SliceData(view.Image)) != unsafe.Pointer(&buf[off]) {
			t.Errorf("ID of %d bytes: the image is a copy, not a view of the file's bytes", n)
		}
		got, err := readCache(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("ID of %d bytes: the case read back differs", n)
		}
		got.Image[0], got.Label[0] = 42, 9
		again, err := readCache(path)
		if err != nil || again.Image[0] != c.Image[0] || again.Label[0] != c.Label[0] {
			t.Fatalf("ID of %d bytes: writing to a case read back changed its file (%v)", n, err)
		}
		raw[len(raw)/2] ^= 1
		os.WriteFile(path, raw, 0o644)
		if _, err := readCache(path); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("ID of %d bytes: a flipped byte read as %v", n, err)
		}
	}
}

// Planning on several goroutines gives the sequential plan; a cached plan
// is served without reading the images, until a case's file changes.
func TestPlanWorkersAndCache(t *testing.T) {
	ds := makeDataset(t, "CT", append(slices.Clone(threeCases), threeCases...))
	want, err := NewPlan(ds, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, workers := range []int{3, 8} {
		got, err := NewPlan(ds, PlanOptions{Workers: workers, CacheDir: dir})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%d workers: %+v, %v; want the sequential plan %+v", workers, got, err, want)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, ds.Name, "plan-*.json"))
	if len(files) != 1 {
		t.Fatalf("plan cache files %v", files)
	}
	// Zeroed images of unchanged size and time stamp go unnoticed: the plan
	// comes from the cache.
	c := ds.Training[2]
	st, _ := os.Stat(c.Image)
	os.WriteFile(c.Image, make([]byte, st.Size()), 0o644)
	os.Chtimes(c.Image, st.ModTime(), st.ModTime())
	if got, err := NewPlan(ds, PlanOptions{Workers: 2, CacheDir: dir}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("cached plan: %+v, %v", got, err)
	}
	// A corrupt cache file is planned again, as is a changed case (which
	// now fails to load).
	os.WriteFile(files[0], []byte("{"), 0o644)
	if got, err := NewPlan(ds, PlanOptions{CacheDir: dir}); err == nil {
		t.Fatalf("a corrupt plan cache and a zeroed image gave %+v", got)
	}
	os.Chtimes(c.Image, st.ModTime(), st.ModTime().Add(time.Second))
	if _, err := NewPlan(ds, PlanOptions{Workers: 2, CacheDir: dir}); err == nil || !strings.Contains(err.Error(), c.ID) {
		t.Fatalf("a changed case was not read again: %v", err)
	}
}

// Resampling large enough to be spread over cores gives, on four, the
// result of one, along every axis and in both directions.
func TestResampleParallelSameAsSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	from := [3]int{30, 41, 50}
	src := make([]float32, from[0]*from[1]*from[2])
	lab := make([]uint8, len(src))
	for i := range src {
		src[i] = float32(rng.NormFloat64())
		lab[i] = uint8(rng.IntN(5))
	}
	for _, to := range [][3]int{{64, 70, 90}, {15, 83, 25}, {30, 41, 111}} {
		run := func(procs int) ([]float32, []uint8) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			l, err := ResampleLinear(src, from, to)
			if err != nil {
				t.Fatal(err)
			}
			n, err := ResampleNearest(lab, from, to)
			if err != nil {
				t.Fatal(err)
			}
			return l, n
		}
		l1, n1 := run(1)
		l4, n4 := run(4)
		if !slices.Equal(l1, l4) || !slices.Equal(n1, n4) {
			t.Errorf("%v → %v: resampling on four cores differs from one", from, to)
		}
	}
}

// BenchmarkRestoreProbabilities resamples three classes' probabilities of a
// 160×200×200 network grid back onto a 300×512×512 image.
func BenchmarkRestoreProbabilities(b *testing.B) {
	g := Geometry{Shape: [3]int{300, 512, 512}, Crop: Box{Hi: [3]int{300, 512, 512}}, Resampled: [3]int{160, 200, 200}}
	probs := make([]float32, 3*160*200*200)
	for b.Loop() {
		if _, err := RestoreProbabilities(probs, 3, g); err != nil {
			b.Fatal(err)
		}
	}
}

// With a crop box of the whole image, restoring is resampling alone.
func TestRestoreWholeVolume(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := Geometry{Shape: [3]int{5, 6, 7}, Crop: Box{Hi: [3]int{5, 6, 7}}, Resampled: [3]int{4, 8, 7}}
	rn := 4 * 8 * 7
	probs := make([]float32, 2*rn)
	labels := make([]uint8, rn)
	for i := range probs {
		probs[i] = rng.Float32()
	}
	for i := range labels {
		labels[i] = uint8(rng.IntN(2))
	}
	var want []float32
	for k := range 2 {
		r, err := ResampleLinear(probs[k*rn:(k+1)*rn], g.Resampled, g.Shape)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r...)
	}
	got, err := RestoreProbabilities(probs, 2, g)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("probabilities: %v; differ from resampling each class", err)
	}
	wantLabels, _ := ResampleNearest(labels, g.Resampled, g.Shape)
	if gotLabels, err := RestoreLabels(labels, g); err != nil || !slices.Equal(gotLabels, wantLabels) {
		t.Fatalf("labels: %v; differ from resampling", err)
	}
}
