// Package augment applies random spatial and intensity transforms to
// training patches and builds the trainer's batches.
//
// The spatial transform (rotation, scaling, mirroring and an optional smooth
// elastic deformation) maps each voxel of the output patch to a point of
// the whole case, so that rotating a patch brings in real context instead of
// empty corners; images are sampled trilinearly and labels by nearest
// neighbour at the same points, which keeps them aligned. Intensity
// transforms (gamma, Gaussian noise) touch the image only. Every random
// choice comes from a generator seeded by (seed, step, batch position), so
// batches do not depend on how goroutines are scheduled: the trainer builds
// them ahead on several at once, and the resampling of one patch spreads
// over the host's cores.
package augment

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/go-gl/mathgl/mgl64"

	"github.com/u2net-vk/u2net/u2net/internal/par"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/sample"
)

// minVoxelsPerWorker keeps the slabs that run in parallel long enough to
// pay for their goroutines.
const minVoxelsPerWorker = 1 << 14

// Params sets the probability and range of each transform. Axes are in
// tensor order (D, H, W) and angles in radians.
type Params struct {
	RotateProb float64    // chance of a rotation
	RotateMax  [3]float64 // largest |angle| about the D, H and W axes

	ScaleProb  float64    // chance of scaling
	ScaleRange [2]float64 // factor on sampling offsets: below 1 enlarges structures

	MirrorProb float64 // chance of mirroring each axis in MirrorAxes
	MirrorAxes [3]bool

	ElasticProb      float64 // chance of an elastic deformation
	ElasticMagnitude float64 // largest displacement of a control point, voxels
	ElasticSpacing   float64 // distance between control points, voxels

	GammaProb  float64    // chance of a gamma change, per channel
	GammaRange [2]float64 // gamma drawn uniformly from this range

	NoiseProb float64 // chance of additive Gaussian noise
	NoiseStd  float64 // its standard deviation is drawn from [0, NoiseStd]
}

// DefaultParams returns settings close to common practice for 3D
// segmentation: rotations up to 30° and scaling 0.7–1.4 on a fifth of the
// patches, mirroring every axis half of the time, gamma 0.7–1.5 on 30% and
// mild noise on 10%; no elastic deformation.
func DefaultParams() Params {
	a := 30 * math.Pi / 180
	return Params{
		RotateProb: 0.2, RotateMax: [3]float64{a, a, a},
		ScaleProb: 0.2, ScaleRange: [2]float64{0.7, 1.4},
		MirrorProb: 0.5, MirrorAxes: [3]bool{true, true, true},
		ElasticMagnitude: 4, ElasticSpacing: 16,
		GammaProb: 0.3, GammaRange: [2]float64{0.7, 1.5},
		NoiseProb: 0.1, NoiseStd: 0.1,
	}
}

// Transform maps the voxels of an output patch to points of a case: the
// patch voxel p goes to Centre + M·(p − patch centre + displacement(p)).
type Transform struct {
	M       mgl64.Mat3 // rotation · scaling · mirroring, on (D, H, W) offsets
	Centre  [3]float64 // case coordinates (D, H, W) of the patch centre
	Elastic *Field     // optional displacement, in patch voxels
}

// Field is a smooth displacement field given on a coarse grid of control
// points spanning the patch and interpolated trilinearly.
type Field struct {
	grid    [3]int     // control points per axis
	spacing [3]float64 // patch voxels between control points
	d       [][3]float64
}

// at returns the displacement at patch voxel (z, y, x).
func (f *Field) at(z, y, x int) [3]float64 {
	p := [3]float64{float64(z) / f.spacing[0], float64(y) / f.spacing[1], float64(x) / f.spacing[2]}
	var i0 [3]int
	var w [3]float64
	for a := range 3 {
		i0[a] = min(int(p[a]), f.grid[a]-2)
		w[a] = p[a] - float64(i0[a])
	}
	var out [3]float64
	for dz := range 2 {
		for dy := range 2 {
			for dx := range 2 {
				wt := pick(w[0], dz) * pick(w[1], dy) * pick(w[2], dx)
				v := f.d[((i0[0]+dz)*f.grid[1]+i0[1]+dy)*f.grid[2]+i0[2]+dx]
				out[0] += wt * v[0]
				out[1] += wt * v[1]
				out[2] += wt * v[2]
			}
		}
	}
	return out
}

func pick(w float64, hi int) float64 {
	if hi == 1 {
		return w
	}
	return 1 - w
}

func newField(rng *rand.Rand, size [3]int, spacing, magnitude float64) *Field {
	f := &Field{}
	n := 1
	for a := range 3 {
		// At least two control points per axis, spanning the patch.
		f.grid[a] = max(2, int(math.Ceil(float64(size[a]-1)/spacing))+1)
		f.spacing[a] = math.Max(float64(size[a]-1), 1) / float64(f.grid[a]-1)
		n *= f.grid[a]
	}
	f.d = make([][3]float64, n)
	for i := range f.d {
		for a := range 3 {
			f.d[i][a] = (2*rng.Float64() - 1) * magnitude
		}
	}
	return f
}

// Draw returns a random spatial transform for a patch of the given size
// centred at centre (case coordinates, D, H, W).
func Draw(rng *rand.Rand, p Params, size [3]int, centre [3]float64) Transform {
	t := Transform{M: mgl64.Ident3(), Centre: centre}
	var flip mgl64.Vec3
	for a := range 3 {
		flip[a] = 1
		if p.MirrorAxes[a] && rng.Float64() < p.MirrorProb {
			flip[a] = -1
		}
	}
	scale := 1.0
	if rng.Float64() < p.ScaleProb {
		scale = p.ScaleRange[0] + rng.Float64()*(p.ScaleRange[1]-p.ScaleRange[0])
	}
	r := mgl64.Ident3()
	if rng.Float64() < p.RotateProb {
		// In (D, H, W) coordinates, a rotation about the D axis turns the
		// H–W plane, and so on; Rotate3DX turns the plane of components
		// 1 and 2, which is the D axis here.
		var ang [3]float64
		for a := range 3 {
			ang[a] = (2*rng.Float64() - 1) * p.RotateMax[a]
		}
		r = mgl64.Rotate3DX(ang[0]).Mul3(mgl64.Rotate3DY(ang[1])).Mul3(mgl64.Rotate3DZ(ang[2]))
	}
	t.M = r.Mul3(mgl64.Diag3(flip.Mul(scale)))
	if p.ElasticMagnitude > 0 && p.ElasticSpacing > 0 && rng.Float64() < p.ElasticProb {
		t.Elastic = newField(rng, size, p.ElasticSpacing, p.ElasticMagnitude)
	}
	return t
}

// Apply samples a patch of the given size from c through t: the image
// trilinearly and the label by nearest neighbour, with zeros (background)
// outside the case.
func (t Transform) Apply(c *preprocess.Case, size [3]int) sample.Patch {
	return t.ApplyInto(c, size, sample.NewPatch(c, size))
}

// ApplyInto is Apply into dst's image and labels (of sample.NewPatch's
// sizes, whatever they hold), which it returns as the patch.
func (t Transform) ApplyInto(c *preprocess.Case, size [3]int, dst sample.Patch) sample.Patch {
	nc := c.Shape[0]
	d, h, w := c.Shape[1], c.Shape[2], c.Shape[3]
	vn := d * h * w
	pn := size[0] * size[1] * size[2]
	p := sample.Patch{Shape: [4]int{nc, size[0], size[1], size[2]}, Image: dst.Image[:nc*pn]}
	if c.Label != nil {
		p.Label = dst.Label[:pn]
	}
	var pc [3]float64
	for a := range 3 {
		pc[a] = float64(size[a]-1) / 2
	}
	m := t.M
	step := m.Col(2) // change of the source point per step along W
	rowLen := size[1] * size[2]
	// Each voxel is computed alone, so slabs of D run in parallel.
	par.Ranges(size[0], max(1, minVoxelsPerWorker/rowLen), func(z0, z1 int) {
		i := z0 * rowLen
		for z := z0; z < z1; z++ {
			for y := range size[1] {
				row := m.Mul3x1(mgl64.Vec3{float64(z) - pc[0], float64(y) - pc[1], -pc[2]})
				for x := range size[2] {
					var s mgl64.Vec3
					if t.Elastic != nil {
						e := t.Elastic.at(z, y, x)
						s = m.Mul3x1(mgl64.Vec3{float64(z) - pc[0] + e[0], float64(y) - pc[1] + e[1], float64(x) - pc[2] + e[2]})
					} else {
						// row + step·x, component by component: the vector
						// methods' copies cost a quarter of a batch. The
						// products are rounded before the sums, as theirs.
						fx := float64(x)
						s = mgl64.Vec3{row[0] + float64(step[0]*fx), row[1] + float64(step[1]*fx), row[2] + float64(step[2]*fx)}
					}
					sz, sy, sx := s[0]+t.Centre[0], s[1]+t.Centre[1], s[2]+t.Centre[2]
					trilinear(p.Image[i:], pn, c.Image, vn, nc, d, h, w, sz, sy, sx)
					if p.Label != nil {
						lz, ly, lx := int(math.Floor(sz+0.5)), int(math.Floor(sy+0.5)), int(math.Floor(sx+0.5))
						p.Label[i] = 0
						if lz >= 0 && lz < d && ly >= 0 && ly < h && lx >= 0 && lx < w {
							p.Label[i] = c.Label[(lz*h+ly)*w+lx]
						}
					}
					i++
				}
			}
		}
	})
	return p
}

// trilinear writes, for each of nc channels of src (vn voxels each, shape
// d×h×w), the value at (z, y, x) into dst[ch·pn], treating voxels outside
// the volume as zero.
func trilinear(dst []float32, pn int, src []float32, vn, nc, d, h, w int, z, y, x float64) {
	fz, fy, fx := math.Floor(z), math.Floor(y), math.Floor(x)
	if fz < -1 || fy < -1 || fx < -1 || fz >= float64(d) || fy >= float64(h) || fx >= float64(w) {
		for ch := range nc {
			dst[ch*pn] = 0
		}
		return
	}
	z0, y0, x0 := int(fz), int(fy), int(fx)
	wz, wy, wx := float32(z-fz), float32(y-fy), float32(x-fx)
	inside := z0 >= 0 && y0 >= 0 && x0 >= 0 && z0+1 < d && y0+1 < h && x0+1 < w
	for ch := range nc {
		v := src[ch*vn : (ch+1)*vn]
		var c [8]float32
		if inside {
			b := (z0*h+y0)*w + x0
			c = [8]float32{v[b], v[b+1], v[b+w], v[b+w+1], v[b+h*w], v[b+h*w+1], v[b+h*w+w], v[b+h*w+w+1]}
		} else {
			k := 0
			for dz := range 2 {
				for dy := range 2 {
					for dx := range 2 {
						zz, yy, xx := z0+dz, y0+dy, x0+dx
						if zz >= 0 && zz < d && yy >= 0 && yy < h && xx >= 0 && xx < w {
							c[k] = v[(zz*h+yy)*w+xx]
						}
						k++
					}
				}
			}
		}
		c00 := c[0] + wx*(c[1]-c[0])
		c01 := c[2] + wx*(c[3]-c[2])
		c10 := c[4] + wx*(c[5]-c[4])
		c11 := c[6] + wx*(c[7]-c[6])
		c0 := c00 + wy*(c01-c00)
		c1 := c10 + wy*(c11-c10)
		dst[ch*pn] = c0 + wz*(c1-c0)
	}
}

// isMirror reports whether t only mirrors axes, so that plain extraction
// and flipping give the same result exactly and faster.
func (t Transform) isMirror(size [3]int) bool {
	if t.Elastic != nil {
		return false
	}
	for i := range 3 {
		for j := range 3 {
			v := t.M.At(i, j)
			if i != j && v != 0 || i == j && v != 1 && v != -1 {
				return false
			}
		}
		// The patch grid must land on voxel centres.
		s := t.Centre[i] - float64(size[i]-1)/2
		if s != math.Trunc(s) {
			return false
		}
	}
	return true
}

// Patch draws a spatial transform for the patch at loc and applies it, then
// the intensity transforms.
func Patch(rng *rand.Rand, p Params, c *preprocess.Case, loc sample.Location, size [3]int) sample.Patch {
	return PatchInto(rng, p, c, loc, size, sample.NewPatch(c, size))
}

// PatchInto is Patch into dst's image and labels (of sample.NewPatch's
// sizes, whatever they hold), which it returns as the patch: a batch's
// patches are made in place, in buffers used again from step to step.
func PatchInto(rng *rand.Rand, p Params, c *preprocess.Case, loc sample.Location, size [3]int, dst sample.Patch) sample.Patch {
	var centre [3]float64
	for a := range 3 {
		centre[a] = float64(loc.Start[a]) + float64(size[a]-1)/2
	}
	t := Draw(rng, p, size, centre)
	var out sample.Patch
	if t.isMirror(size) {
		out = sample.ExtractInto(c, loc, size, dst)
		for a := range 3 {
			if t.M.At(a, a) < 0 {
				flip(&out, a)
			}
		}
	} else {
		out = t.ApplyInto(c, size, dst)
	}
	out.Location = loc
	Intensity(rng, p, &out)
	return out
}

// flip mirrors a patch along axis a (0 = D, 1 = H, 2 = W).
func flip(p *sample.Patch, a int) {
	d, h, w := p.Shape[1], p.Shape[2], p.Shape[3]
	stride := [3]int{h * w, w, 1}[a]
	n := [3]int{d, h, w}[a]
	// The channels follow each other as further blocks along D.
	reverseAxis(p.Image, n, stride)
	if p.Label != nil {
		reverseAxis(p.Label, n, stride)
	}
}

// reverseAxis reverses v, seen as blocks of n runs of stride elements,
// along the runs of each block.
func reverseAxis[T any](v []T, n, stride int) {
	block := n * stride
	for o := 0; o+block <= len(v); o += block {
		if stride == 1 {
			slices.Reverse(v[o : o+block])
			continue
		}
		for k := range n / 2 {
			lo := v[o+k*stride : o+(k+1)*stride]
			hi := v[o+(n-1-k)*stride : o+(n-k)*stride]
			for i := range lo {
				lo[i], hi[i] = hi[i], lo[i]
			}
		}
	}
}

// Intensity applies the gamma and noise transforms to the image of p.
func Intensity(rng *rand.Rand, p Params, patch *sample.Patch) {
	vn := patch.Shape[1] * patch.Shape[2] * patch.Shape[3]
	for ch := range patch.Shape[0] {
		if rng.Float64() < p.GammaProb {
			g := p.GammaRange[0] + rng.Float64()*(p.GammaRange[1]-p.GammaRange[0])
			gamma(patch.Image[ch*vn:(ch+1)*vn], g)
		}
	}
	if rng.Float64() < p.NoiseProb {
		sd := rng.Float64() * p.NoiseStd
		for i := range patch.Image {
			patch.Image[i] += float32(rng.NormFloat64() * sd)
		}
	}
}

// gamma maps v to [0, 1] by its range, raises it to g and maps it back,
// then restores the original mean and standard deviation.
func gamma(v []float32, g float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	var mean float64
	for _, x := range v {
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
		mean += float64(x)
	}
	if !(hi > lo) {
		return
	}
	mean /= float64(len(v))
	sd := stddev(v, mean)
	r := hi - lo
	par.Ranges(len(v), minVoxelsPerWorker, func(a, b int) {
		for i := a; i < b; i++ {
			v[i] = float32(lo + r*math.Pow((float64(v[i])-lo)/r, g))
		}
	})
	var m2 float64
	for _, x := range v {
		m2 += float64(x)
	}
	m2 /= float64(len(v))
	sd2 := stddev(v, m2)
	if sd2 == 0 {
		return
	}
	par.Ranges(len(v), minVoxelsPerWorker, func(a, b int) {
		for i := a; i < b; i++ {
			v[i] = float32((float64(v[i])-m2)/sd2*sd + mean)
		}
	})
}

func stddev(v []float32, mean float64) float64 {
	var s float64
	for _, x := range v {
		d := float64(x) - mean
		s += d * d
	}
	return math.Sqrt(s / float64(len(v)))
}
