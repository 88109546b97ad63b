// Package sample draws training patches from preprocessed cases.
//
// A Sampler picks, for each patch of a batch, a case and a location:
// either uniformly at random or, for the foreground share of the batch,
// centred on a random voxel of a random foreground class, so that rare
// small structures are seen often enough. Volumes smaller than the patch are
// padded with zeros (images) and background (labels). Everything is
// deterministic for a given seed, step and batch position.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/u2net-vk/u2net/u2net/preprocess"
)

// DefaultForegroundFraction is the share of each batch centred on
// foreground unless Options say otherwise.
const DefaultForegroundFraction = 1.0 / 3

// Options tune a Sampler.
type Options struct {
	// ForegroundFraction is the share of each batch (rounded up) whose
	// patches are centred on a foreground voxel; 0 means
	// DefaultForegroundFraction and a negative value none. A batch of one
	// is a foreground patch with this probability.
	ForegroundFraction float64
	Seed               uint64
}

// Location says where a patch is taken from.
type Location struct {
	Case       int    // index into the sampler's cases
	Start      [3]int // first voxel (D, H, W) of the patch; negative or past the end means padding
	Foreground bool   // the patch was centred on the foreground voxel Voxel
	Voxel      [3]int // the foreground voxel (for foreground patches)
}

// Patch is a piece of a case.
type Patch struct {
	Location
	Shape [4]int    // C, D, H, W
	Image []float32 // C·D·H·W
	Label []uint8   // D·H·W; nil when the case has no label
}

// Sampler draws patches of one size from a fixed set of cases.
type Sampler struct {
	cases  []*preprocess.Case
	size   [3]int
	fgFrac float64
	seed   uint64
	// fg[i][k] lists the voxels of case i holding the k-th label present
	// in it (background excluded), as flat indices.
	fg      [][][]int32
	fgCases []int // cases with any foreground
}

// maxForegroundVoxels bounds the voxels a sampler lists per case and
// class: a large organ at fine spacing has millions, and an evenly spaced
// subset centres patches just as well (131 cases of some 2 million liver
// voxels: 1 GiB of lists whole, at most 66 MiB capped).
const maxForegroundVoxels = 1 << 16

// spread returns at most n of the voxels v, evenly spaced through it.
func spread(v []int32, n int) []int32 {
	if len(v) <= n {
		return v
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = v[i*len(v)/n]
	}
	return out
}

// New returns a sampler of patches of size [D, H, W] from cases.
func New(cases []*preprocess.Case, size [3]int, opt Options) (*Sampler, error) {
	if len(cases) == 0 {
		return nil, fmt.Errorf("sample: no cases")
	}
	for a, s := range size {
		if s < 1 {
			return nil, fmt.Errorf("sample: patch size %v: axis %d is not positive", size, a)
		}
	}
	frac := opt.ForegroundFraction
	switch {
	case frac == 0:
		frac = DefaultForegroundFraction
	case frac < 0:
		frac = 0
	case frac > 1 || math.IsNaN(frac):
		return nil, fmt.Errorf("sample: foreground fraction %v is above 1", frac)
	}
	s := &Sampler{cases: cases, size: size, fgFrac: frac, seed: opt.Seed, fg: make([][][]int32, len(cases))}
	for i, c := range cases {
		n := c.Voxels()
		if len(c.Image) != c.Shape[0]*n || (c.Label != nil && len(c.Label) != n) {
			return nil, fmt.Errorf("sample: case %s: shape %v does not match %d image values and %d labels", c.ID, c.Shape, len(c.Image), len(c.Label))
		}
		var byClass [256][]int32
		for j, l := range c.Label {
			if l > 0 {
				byClass[l] = append(byClass[l], int32(j))
			}
		}
		for _, v := range byClass {
			if len(v) > 0 {
				s.fg[i] = append(s.fg[i], spread(v, maxForegroundVoxels))
			}
		}
		if len(s.fg[i]) > 0 {
			s.fgCases = append(s.fgCases, i)
		}
	}
	return s, nil
}

// Size returns the patch size [D, H, W].
func (s *Sampler) Size() [3]int { return s.size }

// Cases returns the sampler's cases.
func (s *Sampler) Cases() []*preprocess.Case { return s.cases }

// Rand returns a generator for the given seed and stream numbers (e.g. a
// step and a batch position). Distinct streams give independent sequences,
// so results do not depend on the order in which streams are used.
func Rand(seed uint64, stream ...uint64) *rand.Rand {
	h := mix(seed ^ 0x9e3779b97f4a7c15)
	for _, x := range stream {
		h = mix(h ^ mix(x+0x632be59bd9b4e019))
	}
	return rand.New(rand.NewPCG(h, mix(h^0xbf58476d1ce4e5b9)))
}

// mix is the SplitMix64 finaliser: a bijection that spreads every input
// bit over the output.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Locations returns the locations of the patches of batch number step with
// batch patches; the last ceil(batch·fraction) are foreground patches.
func (s *Sampler) Locations(step, batch int) []Location {
	nfg := int(math.Ceil(float64(batch)*s.fgFrac - 1e-9))
	if batch == 1 {
		nfg = 0
		if Rand(s.seed, uint64(step), math.MaxUint64).Float64() < s.fgFrac {
			nfg = 1
		}
	}
	out := make([]Location, batch)
	for b := range batch {
		out[b] = s.Location(Rand(s.seed, uint64(step), uint64(b)), b >= batch-nfg)
	}
	return out
}

// Location draws one location with rng; a foreground location when
// foreground is set and some case has foreground.
func (s *Sampler) Location(rng *rand.Rand, foreground bool) Location {
	ci := rng.IntN(len(s.cases))
	if foreground && len(s.fgCases) > 0 {
		if len(s.fg[ci]) == 0 {
			ci = s.fgCases[rng.IntN(len(s.fgCases))]
		}
		c := s.cases[ci]
		classes := s.fg[ci]
		vox := classes[rng.IntN(len(classes))]
		j := int(vox[rng.IntN(len(vox))])
		h, w := c.Shape[2], c.Shape[3]
		v := [3]int{j / (h * w), (j / w) % h, j % w}
		l := Location{Case: ci, Foreground: true, Voxel: v}
		for a := range 3 {
			l.Start[a] = clampStart(v[a]-s.size[a]/2, c.Shape[a+1], s.size[a])
		}
		return l
	}
	c := s.cases[ci]
	l := Location{Case: ci}
	for a := range 3 {
		lo, hi := startRange(c.Shape[a+1], s.size[a])
		l.Start[a] = lo + rng.IntN(hi-lo+1)
	}
	return l
}

// startRange returns the patch starts that keep the patch inside the volume
// or, for a volume smaller than the patch, the volume inside the patch.
func startRange(vol, patch int) (lo, hi int) {
	if vol >= patch {
		return 0, vol - patch
	}
	return vol - patch, 0
}

func clampStart(start, vol, patch int) int {
	lo, hi := startRange(vol, patch)
	return min(max(start, lo), hi)
}

// Batch returns the patches of batch number step.
func (s *Sampler) Batch(step, batch int) []Patch {
	locs := s.Locations(step, batch)
	out := make([]Patch, len(locs))
	for i, l := range locs {
		out[i] = Extract(s.cases[l.Case], l, s.size)
	}
	return out
}

// Extract copies the patch of the given size at l.Start out of c, with zeros
// (background for labels) where it reaches past the volume.
func Extract(c *preprocess.Case, l Location, size [3]int) Patch {
	return ExtractInto(c, l, size, NewPatch(c, size))
}

// NewPatch returns a patch of the given size with room for c's channels
// and, when c has them, its labels.
func NewPatch(c *preprocess.Case, size [3]int) Patch {
	pn := size[0] * size[1] * size[2]
	p := Patch{Shape: [4]int{c.Shape[0], size[0], size[1], size[2]}, Image: make([]float32, c.Shape[0]*pn)}
	if c.Label != nil {
		p.Label = make([]uint8, pn)
	}
	return p
}

// ExtractInto is Extract into dst's image and labels (of NewPatch's sizes,
// whatever they hold), which it returns as the patch.
func ExtractInto(c *preprocess.Case, l Location, size [3]int, dst Patch) Patch {
	nc := c.Shape[0]
	d, h, w := c.Shape[1], c.Shape[2], c.Shape[3]
	pn := size[0] * size[1] * size[2]
	p := Patch{Location: l, Shape: [4]int{nc, size[0], size[1], size[2]}, Image: dst.Image[:nc*pn]}
	clear(p.Image)
	if c.Label != nil {
		p.Label = dst.Label[:pn]
		clear(p.Label)
	}
	// The overlap of the patch with the volume along x, once per row.
	x0, x1 := max(0, l.Start[2]), min(w, l.Start[2]+size[2])
	if x0 >= x1 {
		return p
	}
	for z := range size[0] {
		sz := l.Start[0] + z
		if sz < 0 || sz >= d {
			continue
		}
		for y := range size[1] {
			sy := l.Start[1] + y
			if sy < 0 || sy >= h {
				continue
			}
			src := (sz*h + sy) * w
			dst := (z*size[1]+y)*size[2] + x0 - l.Start[2]
			for ch := range nc {
				copy(p.Image[ch*pn+dst:ch*pn+dst+x1-x0], c.Image[ch*d*h*w+src+x0:ch*d*h*w+src+x1])
			}
			if c.Label != nil {
				copy(p.Label[dst:dst+x1-x0], c.Label[src+x0:src+x1])
			}
		}
	}
	return p
}
