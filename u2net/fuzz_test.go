package u2net

import (
	"testing"
)

// FuzzDecodeModel feeds arbitrary bytes to the model loader: it must return
// an error or a model whose every parameter has the values its shape
// needs, never panic. Seeds are a valid model file and its truncations.
func FuzzDecodeModel(f *testing.F) {
	data := savedModelBytes(f, f.TempDir(), tinyConfig(ModeUniversal, UpsampleTranspose))
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(data[:16])
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := decodeModel(data, "fuzz.safetensors")
		if err != nil {
			if m != nil {
				t.Fatal("model returned with an error")
			}
			return
		}
		for _, p := range m.Params {
			n := 1
			for _, s := range p.Shape {
				n *= s
			}
			if len(m.Values[p.Name]) != n {
				t.Fatalf("%s: %d values for shape %v", p.Name, len(m.Values[p.Name]), p.Shape)
			}
		}
	})
}
