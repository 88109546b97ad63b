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
	size := l.s.Size()
	cases := l.s.Cases()
	locs := l.s.Locations(step, l.cfg.BatchSize)
	nc := cases[0].Shape[0]
	pn := size[0] * size[1] * size[2]
	b := Batch{
		Step:      step,
		Shape:     [5]int{len(locs), nc, size[0], size[1], size[2]},
		Image:     make([]float32, len(locs)*nc*pn),
		Locations: locs,
	}
	if cases[0].Label != nil {
		b.Label = make([]uint8, len(locs)*pn)
	}
	for i, loc := range locs {
		rng := sample.Rand(l.cfg.Seed, uint64(step), uint64(i), 1)
		p := Patch(rng, l.cfg.Params, cases[loc.Case], loc, size)
		copy(b.Image[i*nc*pn:], p.Image)
		if b.Label != nil && p.Label != nil {
			copy(b.Label[i*pn:], p.Label)
		}
	}
	return b
}
