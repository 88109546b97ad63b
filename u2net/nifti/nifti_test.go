package nifti

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-gl/mathgl/mgl64"
)

// rotated returns an affine with the given rotation (degrees about x, y, z),
// voxel sizes and offset.
func rotated(deg [3]float64, zooms [3]float64, off [3]float64, flipZ bool) Affine {
	r := mgl64.Rotate3DZ(mgl64.DegToRad(deg[2])).Mul3(mgl64.Rotate3DY(mgl64.DegToRad(deg[1]))).Mul3(mgl64.Rotate3DX(mgl64.DegToRad(deg[0])))
	z := zooms
	if flipZ {
		z[2] = -z[2]
	}
	m := r.Mul3(mgl64.Diag3(mgl64.Vec3{z[0], z[1], z[2]}))
	a := Identity()
	for i := range 3 {
		for j := range 3 {
			a[i][j] = m.At(i, j)
		}
		a[i][3] = off[i]
	}
	return a
}

func randomValues(dt Datatype, n int, rng *rand.Rand) []float32 {
	lo, hi, integer := dt.valueRange()
	v := make([]float32, n)
	for i := range v {
		if integer {
			v[i] = float32(math.Round(lo + rng.Float64()*(hi-lo)))
		} else {
			v[i] = float32(rng.NormFloat64() * 1e3)
		}
	}
	if integer && n >= 2 {
		v[0], v[1] = float32(lo), float32(hi)
	}
	return v
}

func TestRoundTrip(t *testing.T) {
	dts := []Datatype{Uint8, Int8, Int16, Uint16, Int32, Float32, Float64}
	shapes := [][4]int{{1, 3, 4, 5}, {2, 3, 4, 5}, {1, 1, 1, 7}}
	aff := rotated([3]float64{10, -20, 35}, [3]float64{0.7, 0.8, 2.5}, [3]float64{-90, 12.5, 3}, true)
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	for _, dt := range dts {
		for _, shape := range shapes {
			for _, ext := range []string{".nii", ".nii.gz"} {
				n := shape[0] * shape[1] * shape[2] * shape[3]
				v := &Volume{Header: NewHeader(shape, aff), Shape: shape, Data: randomValues(dt, n, rng)}
				if dt == Int32 {
					// float32 holds integers exactly only up to 2^24.
					for i := range v.Data {
						v.Data[i] = float32(math.Round(float64(v.Data[i]) / 1024))
					}
				}
				v.Header.Descrip = "round trip"
				path := filepath.Join(dir, dt.String()+ext)
				if err := WriteFile(path, v, dt); err != nil {
					t.Fatal(err)
				}
				got, err := ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if got.Shape != shape || got.Header.Datatype != dt || got.Header.Descrip != "round trip" {
					t.Fatalf("%s %v: got shape %v datatype %s descrip %q", dt, shape, got.Shape, got.Header.Datatype, got.Header.Descrip)
				}
				for i := range v.Data {
					if got.Data[i] != v.Data[i] {
						t.Fatalf("%s %v %s: value %d = %v, want %v", dt, shape, ext, i, got.Data[i], v.Data[i])
					}
				}
				if !got.Affine().Approx(aff, 1e-4) || !got.Header.QformAffine().Approx(aff, 1e-4) {
					t.Fatalf("%s: affine\n%v\nqform\n%v\nwant\n%v", dt, got.Affine(), got.Header.QformAffine(), aff)
				}
			}
		}
	}
}

func TestSetAffineQform(t *testing.T) {
	cases := []struct {
		name string
		a    Affine
		ok   bool // the qform can represent it
	}{
		{"identity", Identity(), true},
		{"scaled", rotated([3]float64{}, [3]float64{0.5, 2, 4}, [3]float64{1, 2, 3}, false), true},
		{"rotated", rotated([3]float64{30, 40, 50}, [3]float64{1, 1, 3}, [3]float64{-5, 5, 0}, false), true},
		{"left-handed", rotated([3]float64{5, -70, 20}, [3]float64{1.5, 1, 2}, [3]float64{0, 0, 0}, true), true},
		{"half turn x", rotated([3]float64{180, 0, 0}, [3]float64{1, 1, 1}, [3]float64{}, false), true},
		{"half turn y", rotated([3]float64{0, 180, 0}, [3]float64{1, 2, 1}, [3]float64{}, false), true},
		{"half turn z flipped", rotated([3]float64{0, 0, 180}, [3]float64{1, 1, 2}, [3]float64{}, true), true},
		{"LPS", Affine{{-1, 0, 0, 10}, {0, -1, 0, 20}, {0, 0, 1, -5}, {0, 0, 0, 1}}, true},
		{"sheared", Affine{{1, 0.3, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Header
			h.SetAffine(c.a, 2, 1)
			if got := h.Affine(); !got.Approx(c.a, 1e-12) {
				t.Errorf("sform affine %v, want %v", got, c.a)
			}
			if (h.QformCode == 1) != c.ok {
				t.Fatalf("qform code %d, representable=%v", h.QformCode, c.ok)
			}
			if c.ok {
				if got := h.QformAffine(); !got.Approx(c.a, 1e-9) {
					t.Errorf("qform affine\n%v\nwant\n%v", got, c.a)
				}
			}
		})
	}
}

func TestScalingApplied(t *testing.T) {
	cases := []struct {
		slope, inter float64
		scaled       bool
	}{
		{0, 5, false}, // slope 0 means no scaling, the intercept is ignored
		{math.NaN(), math.NaN(), false},
		{1, 0, false},
		{2, 0, true},
		{1, -1024, true},
		{0.25, 3, true},
	}
	for _, c := range cases {
		h := NewHeader([4]int{1, 1, 2, 3}, Identity())
		h.Datatype, h.Bitpix, h.VoxOffset = Int16, 16, 352
		h.SclSlope, h.SclInter = c.slope, c.inter
		b, err := h.encode1("x")
		if err != nil {
			t.Fatal(err)
		}
		raw := []int16{-3, 0, 1, 7, 100, -32768}
		for _, r := range raw {
			b = binary.LittleEndian.AppendUint16(b, uint16(r))
		}
		v, err := Read(bytes.NewReader(b), "scaled")
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range raw {
			want := float32(r)
			if c.scaled {
				want = float32(float64(r)*c.slope + c.inter)
			}
			if v.Data[i] != want {
				t.Errorf("slope %v inter %v: value %d = %v, want %v", c.slope, c.inter, i, v.Data[i], want)
			}
		}
	}
}

func TestWriteLike(t *testing.T) {
	dir := t.TempDir()
	aff := rotated([3]float64{0, 0, 90}, [3]float64{1, 1, 3}, [3]float64{4, 5, 6}, false)
	ref := NewHeader([4]int{2, 3, 4, 5}, aff)
	ref.Datatype = Int16
	probs := make([]float32, 3*3*4*5)
	for i := range probs {
		probs[i] = float32(i) / float32(len(probs))
	}
	path := filepath.Join(dir, "probs.nii.gz")
	if err := WriteLike(path, &ref, 3, probs, Float32); err != nil {
		t.Fatal(err)
	}
	v, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v.Shape != [4]int{3, 3, 4, 5} || !v.Affine().Approx(aff, 1e-5) {
		t.Fatalf("shape %v affine %v", v.Shape, v.Affine())
	}
	labels := make([]uint8, 3*4*5)
	for i := range labels {
		labels[i] = uint8(i % 3)
	}
	lpath := filepath.Join(dir, "labels.nii.gz")
	if err := WriteLabelsLike(lpath, &ref, labels); err != nil {
		t.Fatal(err)
	}
	lv, err := ReadFile(lpath)
	if err != nil || lv.Header.Datatype != Uint8 || lv.Shape != [4]int{1, 3, 4, 5} || lv.Data[5] != 2 || !lv.Affine().Approx(aff, 1e-5) {
		t.Fatalf("label map: %v, %+v", err, lv)
	}
	if err := WriteLike(filepath.Join(dir, "bad.nii"), &ref, 1, probs, Uint8); err == nil {
		t.Fatal("WriteLike with the wrong data length succeeded")
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	h := NewHeader([4]int{1, 1, 1, 3}, Identity())
	cases := []struct {
		name string
		data []float32
		dt   Datatype
		want string
	}{
		{"too large for uint8", []float32{0, 256, 1}, Uint8, "does not fit uint8"},
		{"negative uint16", []float32{0, -1, 1}, Uint16, "does not fit uint16"},
		{"NaN int16", []float32{0, float32(math.NaN()), 1}, Int16, "does not fit int16"},
		{"wrong length", []float32{0, 1}, Float32, "needs 3 values"},
		{"bad datatype", []float32{0, 1, 2}, Datatype(3), "unsupported datatype"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, "x.nii")
		err := WriteFile(path, &Volume{Header: h, Shape: [4]int{1, 1, 1, 3}, Data: c.data}, c.dt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a failed write left %s behind", c.name, path)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed writes left %d files", len(entries))
	}
}

// validFile returns a small valid uncompressed NIfTI-1 file (uint8, 4×3×2).
func validFile(t testing.TB) []byte {
	h := NewHeader([4]int{1, 2, 3, 4}, Identity())
	v := &Volume{Header: h, Shape: [4]int{1, 2, 3, 4}, Data: make([]float32, 24)}
	for i := range v.Data {
		v.Data[i] = float32(i)
	}
	var buf bytes.Buffer
	if err := Write(&buf, v, Uint8, false); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestReadErrors(t *testing.T) {
	le := binary.LittleEndian
	mod := func(f func(b []byte) []byte) []byte { return f(validFile(t)) }
	put16 := func(off int, v int16) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint16(b[off:], uint16(v)); return b }
	}
	putF := func(off int, v float32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[off:], math.Float32bits(v)); return b }
	}
	// A NIfTI-2 header whose dims multiply past int64.
	n2 := make([]byte, 544)
	le.PutUint32(n2, 540)
	copy(n2[4:], "n+2\x00\r\n\x1a\n")
	le.PutUint16(n2[12:], uint16(Float32))
	le.PutUint64(n2[16:], 3)
	for i := 1; i <= 3; i++ {
		le.PutUint64(n2[16+8*i:], 1<<62)
	}
	le.PutUint64(n2[168:], 544)
	n2neg := append([]byte(nil), n2...)
	le.PutUint64(n2neg[24:], uint64(1<<63))
	// Hostile dims in a compressed file: 1000³ voxels from a few bytes.
	big := validFile(t)
	for i := 1; i <= 3; i++ {
		le.PutUint16(big[40+2*i:], 1000)
	}
	cases := []struct {
		name  string
		data  []byte
		field string
	}{
		{"empty", nil, "header"},
		{"short", []byte{1, 2}, "header"},
		{"truncated header", validFile(t)[:200], "header"},
		{"sizeof_hdr", mod(func(b []byte) []byte { le.PutUint32(b, 349); return b }), "sizeof_hdr"},
		{"magic", mod(func(b []byte) []byte { copy(b[344:], "abcd"); return b }), "magic"},
		{"two-file magic", mod(func(b []byte) []byte { copy(b[344:], "ni1\x00"); return b }), "magic"},
		{"dim[0] zero", mod(put16(40, 0)), "dim[0]"},
		{"dim[0] eight", mod(put16(40, 8)), "dim[0]"},
		{"dim[0] negative", mod(put16(40, -3)), "dim[0]"},
		{"dim[1] negative", mod(put16(42, -4)), "dim[1]"},
		{"dim[2] zero", mod(put16(44, 0)), "dim[2]"},
		{"5D", mod(func(b []byte) []byte { le.PutUint16(b[40:], 5); le.PutUint16(b[50:], 2); return b }), "dim[5]"},
		{"huge dims", mod(func(b []byte) []byte {
			for i := 1; i <= 4; i++ {
				le.PutUint16(b[40+2*i:], 32767)
			}
			le.PutUint16(b[40:], 4)
			return b
		}), "dim[3]"},
		{"dims past file", mod(put16(46, 100)), "dim"},
		{"datatype", mod(put16(70, 1234)), "datatype"},
		{"complex datatype", mod(put16(70, 32)), "datatype"},
		{"vox_offset inside header", mod(putF(108, 100)), "vox_offset"},
		{"vox_offset fraction", mod(putF(108, 352.5)), "vox_offset"},
		{"vox_offset negative", mod(putF(108, -352)), "vox_offset"},
		{"vox_offset NaN", mod(putF(108, float32(math.NaN()))), "vox_offset"},
		{"vox_offset past end", mod(putF(108, 1e9)), "vox_offset"},
		{"scl_slope infinite", mod(putF(112, float32(math.Inf(1)))), "scl_slope"},
		{"scl_inter NaN", mod(func(b []byte) []byte {
			le.PutUint32(b[112:], math.Float32bits(2))
			le.PutUint32(b[116:], math.Float32bits(float32(math.NaN())))
			return b
		}), "scl_inter"},
		{"truncated data", validFile(t)[:360], "dim"},
		{"nifti2 overflow", n2, "dim[1]"},
		{"nifti2 negative", n2neg, "dim[1]"},
		{"gzip truncated data", gz(validFile(t)[:370]), "data"},
		{"gzip truncated header", gz(validFile(t)[:300]), "header"},
		{"gzip hostile dims", gz(big), "dim"},
		{"gzip corrupt", append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}, bytes.Repeat([]byte{0xff}, 50)...), "header"},
		{"gzip bad header", []byte{0x1f, 0x8b, 1, 2, 3}, "gzip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := Read(bytes.NewReader(c.data), "case.nii")
			if err == nil {
				t.Fatalf("read succeeded: shape %v", v.Shape)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			if fe.File != "case.nii" || fe.Field != c.field {
				t.Fatalf("error %q names file %q field %q; want field %q", err, fe.File, fe.Field, c.field)
			}
		})
	}
}

// TestReadUnknownSize checks a stream without a known size: the header may
// claim more data than arrives, and the error says so.
func TestReadUnknownSize(t *testing.T) {
	b := validFile(t)
	v, err := Read(io.MultiReader(bytes.NewReader(b)), "stream")
	if err != nil || len(v.Data) != 24 {
		t.Fatalf("read: %v", err)
	}
	binary.LittleEndian.PutUint16(b[46:], 30000)
	_, err = Read(io.MultiReader(bytes.NewReader(b)), "stream")
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Field != "data" {
		t.Fatalf("error %v, want a data error", err)
	}
}

func TestReadHeader(t *testing.T) {
	path := filepath.Join(fixtureDir, "4d.nii.gz")
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Shape() != [4]int{2, 3, 4, 5} {
		t.Fatalf("shape %v", h.Shape())
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.nii")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestCheckFinite(t *testing.T) {
	shape := [4]int{2, 3, 4, 5} // C, D, H, W
	for _, c := range []struct {
		at   int // element of Data, -1 for none
		v    float64
		want string
	}{
		{-1, 0, ""},
		{0, math.NaN(), "holds NaN at channel 0 voxel [0 0 0] (x, y, z)"},
		{60 + 33, math.Inf(1), "holds +Inf at channel 1 voxel [3 2 1] (x, y, z)"},
		{119, math.Inf(-1), "holds -Inf at channel 1 voxel [4 3 2] (x, y, z)"},
	} {
		v := &Volume{Shape: shape, Data: make([]float32, 120)}
		if c.at >= 0 {
			v.Data[c.at] = float32(c.v)
		}
		err := v.CheckFinite()
		if c.want == "" {
			if err != nil {
				t.Errorf("finite volume: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v at %d: error %v, want %q", c.v, c.at, err, c.want)
		}
	}
}
