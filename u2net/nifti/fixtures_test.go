package nifti

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// fixture is what nibabel reported for one file of testdata/nifti
// (written by testdata/nifti/make_fixtures.py).
type fixture struct {
	Version   int           `json:"version"`
	BigEndian bool          `json:"big_endian"`
	Shape     []int         `json:"shape"`
	Dtype     string        `json:"dtype"`
	Values    []float64     `json:"values"`
	Affine    [4][4]float64 `json:"affine"`
	Qform     [4][4]float64 `json:"qform"`
	QformCode int           `json:"qform_code"`
	Sform     [4][4]float64 `json:"sform"`
	SformCode int           `json:"sform_code"`
	Zooms     [3]float64    `json:"zooms"`
	Slope     float64       `json:"slope"`
	Inter     float64       `json:"inter"`
}

const fixtureDir = "../../testdata/nifti"

func loadFixtures(t *testing.T) map[string]fixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "fixtures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx map[string]fixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx) < 10 {
		t.Fatalf("only %d fixtures", len(fx))
	}
	return fx
}

func TestNibabelFixtures(t *testing.T) {
	for name, want := range loadFixtures(t) {
		t.Run(name, func(t *testing.T) {
			v, err := ReadFile(filepath.Join(fixtureDir, name))
			if err != nil {
				t.Fatal(err)
			}
			h := &v.Header
			if h.Version != want.Version {
				t.Errorf("version %d, nibabel %d", h.Version, want.Version)
			}
			if (h.ByteOrder == binary.BigEndian) != want.BigEndian {
				t.Errorf("byte order %v, nibabel big-endian=%v", h.ByteOrder, want.BigEndian)
			}
			if h.Datatype.String() != want.Dtype {
				t.Errorf("datatype %s, nibabel %s", h.Datatype, want.Dtype)
			}
			wantShape := [4]int{1, want.Shape[2], want.Shape[1], want.Shape[0]}
			if len(want.Shape) == 4 {
				wantShape[0] = want.Shape[3]
			}
			if v.Shape != wantShape {
				t.Fatalf("shape %v, want %v (nibabel %v)", v.Shape, wantShape, want.Shape)
			}
			if len(v.Data) != len(want.Values) {
				t.Fatalf("%d values, nibabel %d", len(v.Data), len(want.Values))
			}
			for i, w := range want.Values {
				g := float64(v.Data[i])
				if math.Abs(g-w) > 1e-6*math.Max(1, math.Abs(w)) {
					t.Fatalf("value %d = %v, nibabel %v", i, g, w)
				}
			}
			if h.scaled() != (want.Slope != 1 || want.Inter != 0) {
				t.Errorf("scaled=%v; nibabel slope %v inter %v", h.scaled(), want.Slope, want.Inter)
			}
			if h.QformCode != want.QformCode || h.SformCode != want.SformCode {
				t.Errorf("codes q=%d s=%d, nibabel q=%d s=%d", h.QformCode, h.SformCode, want.QformCode, want.SformCode)
			}
			if !h.QformAffine().Approx(want.Qform, 1e-5) {
				t.Errorf("qform\n%v\nnibabel\n%v", h.QformAffine(), want.Qform)
			}
			if !h.SformAffine().Approx(want.Sform, 1e-5) {
				t.Errorf("sform\n%v\nnibabel\n%v", h.SformAffine(), want.Sform)
			}
			wantAffine := Affine(want.Affine)
			if want.QformCode == 0 && want.SformCode == 0 {
				// nibabel falls back to an Analyze-style centred affine;
				// the NIfTI-1 standard's method 1 is the pixdim diagonal.
				wantAffine = Identity()
				for i := range 3 {
					wantAffine[i][i] = want.Zooms[i]
				}
			}
			if !v.Affine().Approx(wantAffine, 1e-5) {
				t.Errorf("affine\n%v\nwant\n%v", v.Affine(), wantAffine)
			}
			for i, z := range v.Spacing() {
				if math.Abs(z-want.Zooms[i]) > 1e-6 {
					t.Errorf("spacing %v, nibabel zooms %v", v.Spacing(), want.Zooms)
					break
				}
			}
		})
	}
}
