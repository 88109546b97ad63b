// Package synth writes synthetic multi-domain segmentation datasets in the
// Medical Segmentation Decathlon layout, for tests, demos and quick training
// runs without real scans.
//
// Each domain imitates a kind of real data and differs from the others the
// way real domains do: modality and intensity scale, number of channels,
// voxel size (including strongly anisotropic slices), volume size,
// orientation (each case has its own affine), contrast, noise and smooth
// bias fields. Anatomy is defined in world millimetres and sampled through
// each case's affine, so labels and images agree whatever the orientation.
// Test labels go to labelsTs/ for evaluation. The output is byte-identical
// for a seed (on a given platform and Go version).
package synth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/go-gl/mathgl/mgl64"

	"github.com/u2net-vk/u2net/u2net/nifti"
)

// Config sizes the output.
type Config struct {
	Seed      uint64
	Cases     int // training cases per domain, at least 1
	TestCases int // test cases per domain, 0 or more
	Size      int // nominal voxels per in-plane axis, 12..512
}

// DefaultConfig returns the default sizes: 12 training and 4 test cases per
// domain of about 40 voxels per in-plane axis, small enough to train on a
// CPU in minutes.
func DefaultConfig(seed uint64) Config {
	return Config{Seed: seed, Cases: 12, TestCases: 4, Size: 40}
}

func (c Config) validate() error {
	switch {
	case c.Cases < 1 || c.Cases > 10000:
		return fmt.Errorf("synth: %d training cases: want 1..10000", c.Cases)
	case c.TestCases < 0 || c.TestCases > 10000:
		return fmt.Errorf("synth: %d test cases: want 0..10000", c.TestCases)
	case c.Size < 12 || c.Size > 512:
		return fmt.Errorf("synth: size %d: want 12..512 voxels", c.Size)
	}
	return nil
}

// Domain describes one synthetic domain.
type Domain struct {
	Name        string
	Description string
	Modalities  []string
	Labels      []string
	// make builds case i of the domain.
	make func(rng *rand.Rand, size int) volume
}

// volume is a generated case before writing.
type volume struct {
	shape  [4]int // C, D, H, W
	affine nifti.Affine
	image  []float32
	label  []float32
	dtype  nifti.Datatype
}

// Domains returns the domains Write produces, in order.
func Domains() []Domain {
	return []Domain{
		{Name: "SynthCT", Description: "CT-like abdomen: two organs of different enhancement in Hounsfield units",
			Modalities: []string{"CT"}, Labels: []string{"background", "organ_a", "organ_b"}, make: makeCT},
		{Name: "SynthMR", Description: "two-channel MR-like brain lesion: core and surrounding oedema, skull-stripped",
			Modalities: []string{"T1", "T2"}, Labels: []string{"background", "core", "edema"}, make: makeMR},
		{Name: "SynthVessel", Description: "anisotropic MR angiography-like slices (about 0.8×0.8×4 mm) with thin tubular vessels",
			Modalities: []string{"MRA"}, Labels: []string{"background", "vessel"}, make: makeVessel},
	}
}

// Info summarises a written domain.
type Info struct {
	Name     string
	Dir      string
	Training int
	Test     int
}

// Write creates dir and writes every domain into dir/<name>. dir must not
// exist or be empty; the output is built in a temporary folder next to it
// and renamed into place, so dir never holds a partial result.
func Write(dir string, cfg Config) ([]Info, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if entries, err := os.ReadDir(dir); err == nil {
		if len(entries) > 0 {
			return nil, fmt.Errorf("synth: %s exists and is not empty", dir)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("synth: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	var infos []Info
	for di, d := range Domains() {
		if err := writeDomain(filepath.Join(tmp, d.Name), d, uint64(di), cfg); err != nil {
			return nil, err
		}
		infos = append(infos, Info{Name: d.Name, Dir: filepath.Join(dir, d.Name), Training: cfg.Cases, Test: cfg.TestCases})
	}
	// An empty dir is replaced; rename does not replace directories on every
	// system.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return infos, nil
}

// descriptor is dataset.json.
type descriptor struct {
	Name            string            `json:"name"`
	Description     string            `json:"description"`
	Reference       string            `json:"reference"`
	Licence         string            `json:"licence"`
	TensorImageSize string            `json:"tensorImageSize"`
	Modality        map[string]string `json:"modality"`
	Labels          map[string]string `json:"labels"`
	NumTraining     int               `json:"numTraining"`
	NumTest         int               `json:"numTest"`
	Training        []pair            `json:"training"`
	Test            []string          `json:"test"`
}

type pair struct {
	Image string `json:"image"`
	Label string `json:"label"`
}

func writeDomain(root string, d Domain, index uint64, cfg Config) error {
	for _, sub := range []string{"imagesTr", "labelsTr", "imagesTs", "labelsTs"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	desc := descriptor{
		Name: d.Name, Description: d.Description,
		Reference: "synthetic", Licence: "CC0", TensorImageSize: "3D",
		Modality: map[string]string{}, Labels: map[string]string{},
		NumTraining: cfg.Cases, NumTest: cfg.TestCases,
		Training: []pair{}, Test: []string{},
	}
	if len(d.Modalities) > 1 {
		desc.TensorImageSize = "4D"
	}
	for i, m := range d.Modalities {
		desc.Modality[fmt.Sprint(i)] = m
	}
	for i, l := range d.Labels {
		desc.Labels[fmt.Sprint(i)] = l
	}
	for i := range cfg.Cases + cfg.TestCases {
		test := i >= cfg.Cases
		rng := rand.New(rand.NewPCG(cfg.Seed, index<<32|uint64(i)))
		v := d.make(rng, cfg.Size)
		file := fmt.Sprintf("%s_%03d.nii.gz", lower(d.Name), i+1)
		imgDir, labDir := "imagesTr", "labelsTr"
		if test {
			imgDir, labDir = "imagesTs", "labelsTs"
		}
		hdr := nifti.NewHeader(v.shape, v.affine)
		hdr.Descrip = d.Name + " synthetic case"
		img := &nifti.Volume{Header: hdr, Shape: v.shape, Data: v.image}
		if err := nifti.WriteFile(filepath.Join(root, imgDir, file), img, v.dtype); err != nil {
			return err
		}
		if err := nifti.WriteLike(filepath.Join(root, labDir, file), &hdr, 1, v.label, nifti.Uint8); err != nil {
			return err
		}
		if test {
			desc.Test = append(desc.Test, "./"+imgDir+"/"+file)
		} else {
			desc.Training = append(desc.Training, pair{"./" + imgDir + "/" + file, "./" + labDir + "/" + file})
		}
	}
	b, err := json.MarshalIndent(desc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "dataset.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// grid is a case's voxel grid and its mapping to world millimetres.
type grid struct {
	n      [3]int // voxels along x, y, z
	affine nifti.Affine
}

// newGrid returns a grid of n voxels of size sp (x, y, z) whose direction
// matrix is rot, centred on the world origin plus shift.
func newGrid(n [3]int, sp [3]float64, rot mgl64.Mat3, shift mgl64.Vec3) grid {
	m := rot.Mul3(mgl64.Diag3(mgl64.Vec3{sp[0], sp[1], sp[2]}))
	c := mgl64.Vec3{float64(n[0]-1) / 2, float64(n[1]-1) / 2, float64(n[2]-1) / 2}
	t := shift.Sub(m.Mul3x1(c))
	a := nifti.Identity()
	for i := range 3 {
		for j := range 3 {
			a[i][j] = m.At(i, j)
		}
		a[i][3] = t[i]
	}
	return grid{n: n, affine: a}
}

// each calls f with the flat index and world position of every voxel, in
// file order (x fastest).
func (g grid) each(f func(i int, w mgl64.Vec3)) {
	i := 0
	for k := range g.n[2] {
		for j := range g.n[1] {
			for x := range g.n[0] {
				p := g.affine.Apply(float64(x), float64(j), float64(k))
				f(i, mgl64.Vec3{p[0], p[1], p[2]})
				i++
			}
		}
	}
}

func (g grid) voxels() int { return g.n[0] * g.n[1] * g.n[2] }

func (g grid) shape(channels int) [4]int { return [4]int{channels, g.n[2], g.n[1], g.n[0]} }

// uniform returns a value in [lo, hi).
func uniform(rng *rand.Rand, lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }

// jitterSize returns about n·f voxels, varied by ±20%.
func jitterSize(rng *rand.Rand, n int, f float64) int {
	return max(8, int(math.Round(float64(n)*f*uniform(rng, 0.8, 1.2))))
}

// randomRotation returns a rotation by up to maxDeg about each axis.
func randomRotation(rng *rand.Rand, maxDeg float64) mgl64.Mat3 {
	r := func() float64 { return mgl64.DegToRad(uniform(rng, -maxDeg, maxDeg)) }
	return mgl64.Rotate3DZ(r()).Mul3(mgl64.Rotate3DY(r())).Mul3(mgl64.Rotate3DX(r()))
}

// ellipsoid is a solid ellipsoid in world coordinates.
type ellipsoid struct {
	centre mgl64.Vec3
	radii  mgl64.Vec3
	rot    mgl64.Mat3 // world → ellipsoid axes
}

// level returns the ellipsoid's normalised radius at w: below 1 inside.
func (e ellipsoid) level(w mgl64.Vec3) float64 {
	p := e.rot.Mul3x1(w.Sub(e.centre))
	x, y, z := p[0]/e.radii[0], p[1]/e.radii[1], p[2]/e.radii[2]
	return math.Sqrt(x*x + y*y + z*z)
}

// biasField is a smooth multiplicative intensity variation
// exp(a·w/L + b·(w/L)²) over a world extent L.
type biasField struct {
	lin, quad mgl64.Vec3
	scale     float64
}

func newBias(rng *rand.Rand, strength, extent float64) biasField {
	var b biasField
	for a := range 3 {
		b.lin[a] = uniform(rng, -strength, strength)
		b.quad[a] = uniform(rng, -strength, strength) / 2
	}
	b.scale = 1 / extent
	return b
}

func (b biasField) at(w mgl64.Vec3) float64 {
	p := w.Mul(b.scale)
	return math.Exp(b.lin.Dot(p) + b.quad[0]*p[0]*p[0] + b.quad[1]*p[1]*p[1] + b.quad[2]*p[2]*p[2])
}

// smoothStep blends from 0 (d ≤ −h) to 1 (d ≥ h), imitating partial volume.
func smoothStep(d, h float64) float64 {
	t := math.Min(1, math.Max(0, (d+h)/(2*h)))
	return t * t * (3 - 2*t)
}
