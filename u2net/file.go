package u2net

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nlpodyssey/safetensors"
)

// Model files are safetensors files: one float32 tensor per parameter, named
// as the package documentation describes, and the Config as JSON under the
// metadata key "config". Checkpoints add tensors whose names start with
// StatePrefix (optimiser state) and metadata of their own.

// StatePrefix starts the names of non-parameter tensors in checkpoints.
const StatePrefix = "state."

// File is the content of a model file beyond the model itself.
type File struct {
	// State holds extra float32 tensors (names start with StatePrefix).
	State map[string][]float32
	// Meta holds extra metadata; "config" is reserved.
	Meta map[string]string
}

type f32View struct {
	shape []uint64
	data  []byte
}

func (v f32View) DType() safetensors.DType { return safetensors.F32 }
func (v f32View) Shape() []uint64          { return v.shape }
func (v f32View) Data() []byte             { return v.data }
func (v f32View) DataLen() uint64          { return uint64(len(v.data)) }

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// Save writes the model to path atomically: a temporary file in the same
// folder is written, synced and renamed, so a failure never leaves a torn or
// half-written model in place of a good one.
func (m *Model) Save(path string) error { return m.SaveFile(path, File{}) }

// SaveFile writes the model with extra state and metadata (see Save).
func (m *Model) SaveFile(path string, f File) error {
	cfg, err := json.Marshal(m.Config)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	meta := map[string]string{}
	for k, v := range f.Meta {
		meta[k] = v
	}
	meta["config"] = string(cfg)
	views := map[string]f32View{}
	for _, p := range m.Params {
		v, err := m.view(p)
		if err != nil {
			return fmt.Errorf("saving %s: %w", path, err)
		}
		views[p.Name] = v
	}
	for name, v := range f.State {
		if !strings.HasPrefix(name, StatePrefix) {
			return fmt.Errorf("saving %s: state tensor %q must start with %q", path, name, StatePrefix)
		}
		views[name] = f32View{[]uint64{uint64(len(v))}, f32Bytes(v)}
	}
	return writeAtomic(path, func(w *os.File) error { return safetensors.SerializeToWriter(views, meta, w) })
}

// view is parameter p's values as a float32 tensor of its shape.
func (m *Model) view(p *Param) (f32View, error) {
	v := m.Values[p.Name]
	if len(v) != p.Len() {
		return f32View{}, fmt.Errorf("parameter %s has %d values, want %d", p.Name, len(v), p.Len())
	}
	shape := make([]uint64, len(p.Shape))
	for i, s := range p.Shape {
		shape[i] = uint64(s)
	}
	return f32View{shape, f32Bytes(v)}, nil
}

// writeAtomic writes a file through write into a temporary file next to
// path, syncs it and renames it over path.
func writeAtomic(path string, write func(*os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	ok = true
	return nil
}

// Load reads a model file.
func Load(path string) (*Model, error) {
	m, _, err := LoadFile(path)
	return m, err
}

// LoadFile reads a model file with its extra state and metadata. It checks
// every parameter's name, dtype and shape against the config and lists every
// mismatch.
func LoadFile(path string) (*Model, File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, File{}, fmt.Errorf("loading model: %w", err)
	}
	return decodeModel(data, path)
}

// decodeModel is LoadFile of the bytes data of the file path.
func decodeModel(data []byte, path string) (*Model, File, error) {
	_, header, err := safetensors.ReadMetadata(data)
	if err != nil {
		return nil, File{}, fmt.Errorf("loading model %s: not a readable safetensors file (truncated or corrupt?): %w", path, err)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, File{}, fmt.Errorf("loading model %s: %w", path, err)
	}
	meta := header.Metadata()
	raw, ok := meta["config"]
	if !ok {
		return nil, File{}, fmt.Errorf("loading model %s: no \"config\" in the metadata; is it a u2net model file?", path)
	}
	cfg, err := ParseConfig([]byte(raw))
	if err != nil {
		return nil, File{}, fmt.Errorf("loading model %s: %w", path, err)
	}
	params, err := declare(cfg)
	if err != nil {
		return nil, File{}, fmt.Errorf("loading model %s: %w", path, err)
	}
	m := &Model{Config: cfg, Params: params, Values: map[string][]float32{}}
	f := File{State: map[string][]float32{}, Meta: map[string]string{}}
	for k, v := range meta {
		if k != "config" {
			f.Meta[k] = v
		}
	}
	var problems []string
	declared := map[string]bool{}
	for _, p := range params {
		declared[p.Name] = true
		tv, ok := st.Tensor(p.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("missing tensor %s %s", p.Name, p.shapeString()))
			continue
		}
		v, err := tensorValues(tv, p.Shape)
		if err != nil {
			problems = append(problems, fmt.Sprintf("tensor %s: %v", p.Name, err))
			continue
		}
		m.Values[p.Name] = v
	}
	for _, name := range st.Names() {
		if declared[name] {
			continue
		}
		if strings.HasPrefix(name, StatePrefix) {
			tv, _ := st.Tensor(name)
			v, err := tensorValues(tv, nil)
			if err != nil {
				problems = append(problems, fmt.Sprintf("state tensor %s: %v", name, err))
				continue
			}
			f.State[name] = v
			continue
		}
		problems = append(problems, "unexpected tensor "+name)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, File{}, fmt.Errorf("loading model %s: %d problem(s):\n  %s", path, len(problems), strings.Join(problems, "\n  "))
	}
	return m, f, nil
}

// tensorValues decodes a float32 tensor, checking its shape when want is
// not nil.
func tensorValues(tv safetensors.TensorView, want []int) ([]float32, error) {
	if tv.DType() != safetensors.F32 {
		return nil, fmt.Errorf("dtype %s, want F32", tv.DType())
	}
	if want != nil {
		got := tv.Shape()
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			same = got[i] == uint64(want[i])
		}
		if !same {
			return nil, fmt.Errorf("shape %v, want %v", got, want)
		}
	}
	b := tv.Data()
	if len(b)%4 != 0 {
		return nil, errors.New("data length is not a multiple of 4")
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func float64frombytes(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }
