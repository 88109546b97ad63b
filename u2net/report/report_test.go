package report

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// keep copies a written PNG to $REPORT_KEEP_DIR (when set) so a person can
// look at it.
func keep(t *testing.T, path string) {
	dir := os.Getenv("REPORT_KEEP_DIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// phantom returns a [D][H][W] image of a bright ellipsoid with a gradient
// and noise-free background, and labels: class 1 a ball inside it, class 2
// a box.
func phantom(sh [3]int, sp [3]float64) ([]float32, []uint8) {
	img := make([]float32, sh[0]*sh[1]*sh[2])
	lab := make([]uint8, len(img))
	i := 0
	for z := range sh[0] {
		for y := range sh[1] {
			for x := range sh[2] {
				// Millimetres from the centre.
				dz := (float64(z) - float64(sh[0])/2) * sp[0]
				dy := (float64(y) - float64(sh[1])/2) * sp[1]
				dx := (float64(x) - float64(sh[2])/2) * sp[2]
				r := math.Sqrt(dz*dz+dy*dy+dx*dx) / (0.45 * float64(sh[2]) * sp[2])
				if r < 1 {
					// Texture, and brighter towards +z, so orientation shows.
					img[i] = float32(100 + 60*math.Sin(dx/4)*math.Cos(dy/5) + 2*dz)
				} else {
					img[i] = -1000
				}
				if r < 0.4 {
					lab[i] = 1
				}
				if dx > 0.15*float64(sh[2])*sp[2] && dx < 0.3*float64(sh[2])*sp[2] && math.Abs(dy) < 5 && math.Abs(dz) < 8 {
					lab[i] = 2
				}
				i++
			}
		}
	}
	return img, lab
}

func TestPreview(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name       string
		shape      [3]int
		spacing    [3]float64
		labels     bool
		wantW      int
		wantH      int
		wantLabelX int // an x in the first panel at the row of the centre that should be tinted
	}{
		// Extents 60, 32, 40 mm; finest 0.8 mm gives a 75 px tall panel,
		// under 192, so 60/192 = 0.3125 mm per pixel: panels 128, 128
		// and 102 px wide, 192 tall.
		{"anisotropic", [3]int{20, 40, 50}, [3]float64{3, 0.8, 0.8}, true, 128 + 4 + 128 + 4 + 102, 192, 64},
		// Extents 40 mm each at 1 mm: 40 px, scaled up to 192.
		{"isotropic, no labels", [3]int{40, 40, 40}, [3]float64{1, 1, 1}, false, 3*192 + 8, 192, -1},
		// 256 × 1 mm: 256 px, inside the limits.
		{"large", [3]int{64, 256, 256}, [3]float64{2, 1, 1}, true, 3*256 + 8, 256, 128},
	}
	for _, c := range cases {
		img, lab := phantom(c.shape, c.spacing)
		if !c.labels {
			lab = nil
		}
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".png")
		if err := Preview(path, img, lab, c.shape, c.spacing); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		keep(t, path)
		pic := decodePNG(t, path)
		b := pic.Bounds()
		if b.Dx() != c.wantW || b.Dy() != c.wantH {
			t.Errorf("%s: %dx%d, want %dx%d", c.name, b.Dx(), b.Dy(), c.wantW, c.wantH)
		}
		if c.wantLabelX >= 0 {
			// The axial panel's rows are H; its centre row runs through
			// the ball of class 1 (red).
			r, g, bb, _ := pic.At(c.wantLabelX, axialCentreRow(c.shape, c.spacing, c.wantH)).RGBA()
			if !(r > g+0x1000 && r > bb+0x1000) {
				t.Errorf("%s: pixel in the ball is %x %x %x, not tinted red", c.name, r, g, bb)
			}
		}
		// Left of the ellipsoid is background at the 1st percentile: black.
		if r, g, bb, _ := pic.At(1, 1).RGBA(); r|g|bb != 0 {
			t.Errorf("%s: corner %x %x %x, want black", c.name, r, g, bb)
		}
	}
}

// axialCentreRow returns the row of the first panel through the volume's
// centre, given the picture's height (the tallest panel's).
func axialCentreRow(sh [3]int, sp [3]float64, height int) int {
	tallest := math.Max(float64(sh[0])*sp[0], float64(sh[1])*sp[1])
	mmpp := tallest / float64(height)
	return int(float64(sh[1]) / 2 * sp[1] / mmpp)
}

func TestPreviewErrors(t *testing.T) {
	dir := t.TempDir()
	img := make([]float32, 8)
	cases := []struct {
		name    string
		path    string
		img     []float32
		labels  []uint8
		shape   [3]int
		spacing [3]float64
		want    string
	}{
		{"image length", "a.png", make([]float32, 7), nil, [3]int{2, 2, 2}, [3]float64{1, 1, 1}, "image has 7 voxels"},
		{"labels length", "a.png", img, make([]uint8, 9), [3]int{2, 2, 2}, [3]float64{1, 1, 1}, "labels have 9 voxels"},
		{"shape", "a.png", img, nil, [3]int{0, 2, 4}, [3]float64{1, 1, 1}, "shape"},
		{"spacing", "a.png", img, nil, [3]int{2, 2, 2}, [3]float64{1, -1, 1}, "spacing"},
		{"folder missing", "missing/a.png", img, nil, [3]int{2, 2, 2}, [3]float64{1, 1, 1}, "missing"},
	}
	for _, c := range cases {
		err := Preview(filepath.Join(dir, c.path), c.img, c.labels, c.shape, c.spacing)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// Constant and non-finite images still give a picture.
	nan := []float32{float32(math.NaN()), 1, 1, 1, float32(math.Inf(1)), 1, 1, 1}
	if err := Preview(filepath.Join(dir, "flat.png"), nan, nil, [3]int{2, 2, 2}, [3]float64{1, 1, 1}); err != nil {
		t.Error(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func trainingRecords() []Record {
	var rs []Record
	for step := 0; step <= 2000; step += 50 {
		e := step / 250
		lr := 0.01 * math.Pow(1-float64(step)/2001, 0.9)
		rs = append(rs, Record{Epoch: e, Step: step, Loss: 1.2*math.Exp(-float64(step)/600) + 0.1, LR: lr})
		if step%250 == 0 && step > 0 {
			f := 1 - math.Exp(-float64(step)/700)
			rs = append(rs, Record{Epoch: e, Step: step, Dice: map[string]float64{"heart": 0.9 * f, "liver": 0.8 * f, "vessel": 0.6 * f}})
		}
	}
	return rs
}

func TestProgress(t *testing.T) {
	dir := t.TempDir()
	noDice := []Record{{Epoch: 1, Step: 10, Loss: 1, LR: 0.01}, {Epoch: 1, Step: 20, Loss: 0.9, LR: 0.009}}
	epochsOnly := []Record{{Epoch: 1, Loss: 1, LR: 0.01, Dice: map[string]float64{"a": 0.5}}, {Epoch: 2, Loss: 0.9, LR: 0.009, Dice: map[string]float64{"a": 0.6}}}
	cases := []struct {
		name    string
		records []Record
		panels  int
	}{
		{"progress", trainingRecords(), 3},
		{"no validation", noDice, 2},
		{"epochs only", epochsOnly, 3},
		{"one record", noDice[:1], 2},
	}
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".png")
		if err := Progress(path, c.records); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		keep(t, path)
		b := decodePNG(t, path).Bounds()
		wantH := 2.6 * float64(c.panels) * 96
		if b.Dx() != 768 || math.Abs(float64(b.Dy())-wantH) > 1 {
			t.Errorf("%s: %dx%d, want 768x%.0f", c.name, b.Dx(), b.Dy(), wantH)
		}
	}
	if err := Progress(filepath.Join(dir, "x.png"), nil); err == nil || !strings.Contains(err.Error(), "no records") {
		t.Errorf("no records: %v", err)
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	var buf bytes.Buffer
	want := trainingRecords()
	for _, r := range want {
		if err := WriteRecord(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteRecord(&buf, Record{Loss: math.NaN()}); err == nil {
		t.Error("NaN loss written")
	}
	// A blank line and a record cut off mid-write are tolerated.
	buf.WriteString("\n{\"epoch\":9,\"st")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read %d records, wrote %d; first %+v vs %+v", len(got), len(want), got[0], want[0])
	}

	cases := []struct {
		name, text, want string
	}{
		{"bad middle line", "{\"step\":1}\nnot json\n{\"step\":2}\n", "metrics.jsonl:2"},
		{"bad terminated last line", "{\"step\":1}\n{\"step\":\n", "metrics.jsonl:2"},
		{"wrong type", "{\"step\":\"one\"}\n", "metrics.jsonl:1"},
	}
	for _, c := range cases {
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRecords(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := ReadRecords(filepath.Join(t.TempDir(), "none.jsonl")); err == nil {
		t.Error("missing file: no error")
	}
}
