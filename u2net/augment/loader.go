package augment

import (
	"fmt"

	"github.com/u2net-vk/u2net/u2net/sample"
)

// LoaderConfig sets up a Loader.
type LoaderConfig struct {
	BatchSize int
	Params    Params
	Seed      uint64 // seeds the augmentation (the sampler has its own)
}

// Batch is a stack of augmented patches.
type Batch struct {
	Step      int
	Shape     [5]int    // N, C, D, H, W
	Image     []float32 // N·C·D·H·W
	Label     []uint8   // N·D·H·W; nil when the cases have no labels
	Locations []sample.Location
}

// Loader makes augmented batches from a sampler. Batch is safe to call
// from several goroutines at once, so batches can be built ahead of the
// trainer in any order.
type Loader struct {
	s   *sample.Sampler
	cfg LoaderConfig
}

// NewLoader returns a loader of batches drawn by s.
func NewLoader(s *sample.Sampler, cfg LoaderConfig) (*Loader, error) {
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("augment: batch size %d is not positive", cfg.BatchSize)
	}
	return &Loader{s: s, cfg: cfg}, nil
}

// Batch builds batch number step. The result depends only on the
// sampler, the configuration and step.
func (l *Loader) Batch(step int) Batch {
	var b Batch
	l.BatchInto(step, &b)
	return b
}

// BatchInto builds batch number step into b, reusing its image and label
// slices where they have the room (a 128³ batch's are tens of MB, whose
// pages a new slice has to fault in again every step). The result is
// Batch's, bit for bit.
func (l *Loader) BatchInto(step int, b *Batch) {
	size := l.s.Size()
	cases := l.s.Cases()
	locs := l.s.Locations(step, l.cfg.BatchSize)
	nc := cases[0].Shape[0]
	pn := size[0] * size[1] * size[2]
	b.Step = step
	b.Shape = [5]int{len(locs), nc, size[0], size[1], size[2]}
	b.Locations = locs
	b.Image = resize(b.Image, len(locs)*nc*pn)
	labels := b.Label
	b.Label = nil
	if cases[0].Label != nil {
		b.Label = resize(labels, len(locs)*pn)
	}
	for i, loc := range locs {
		rng := sample.Rand(l.cfg.Seed, uint64(step), uint64(i), 1)
		dst := sample.Patch{Image: b.Image[i*nc*pn : (i+1)*nc*pn]}
		if b.Label != nil {
			dst.Label = b.Label[i*pn : (i+1)*pn]
			if cases[loc.Case].Label == nil {
				clear(dst.Label) // background, as in a new batch
				dst.Label = nil
			}
		}
		PatchInto(rng, l.cfg.Params, cases[loc.Case], loc, size, dst)
	}
}

// resize returns s with length n, reallocated only when its capacity is
// short.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
