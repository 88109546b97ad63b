package nifti

import (
	"bytes"
	"math"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read: it must return an error or a
// volume whose data matches its shape, and such a volume must survive a
// write and a second read unchanged. Seeds live in testdata/fuzz/FuzzRead.
func FuzzRead(f *testing.F) {
	f.Add(validFile(f))
	f.Add(gz(validFile(f)))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Read(bytes.NewReader(data), "fuzz.nii")
		if err != nil {
			if v != nil {
				t.Fatal("volume returned with an error")
			}
			return
		}
		n := 1
		for _, s := range v.Shape {
			if s < 1 {
				t.Fatalf("shape %v", v.Shape)
			}
			n *= s
		}
		if n != len(v.Data) || v.Shape != v.Header.Shape() {
			t.Fatalf("shape %v (header %v) with %d values", v.Shape, v.Header.Shape(), len(v.Data))
		}
		_ = v.Affine()
		_ = v.Spacing()
		var buf bytes.Buffer
		if err := Write(&buf, v, Float32, false); err != nil {
			// NIfTI-2 sizes beyond NIfTI-1's 16-bit fields cannot be written.
			return
		}
		w, err := Read(bytes.NewReader(buf.Bytes()), "rewritten.nii")
		if err != nil {
			t.Fatalf("re-reading a written volume: %v", err)
		}
		if w.Shape != v.Shape {
			t.Fatalf("rewritten shape %v, want %v", w.Shape, v.Shape)
		}
		for i := range v.Data {
			if math.Float32bits(w.Data[i]) != math.Float32bits(v.Data[i]) {
				t.Fatalf("rewritten value %d = %v, want %v", i, w.Data[i], v.Data[i])
			}
		}
	})
}
