package augment

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/u2net-vk/u2net/u2net/sample"
)

// LoaderConfig sets up a Loader.
type LoaderConfig struct {
	BatchSize int
	Params    Params
	Seed      uint64 // seeds the augmentation (the sampler has its own)
	Workers   int    // goroutines building batches; 0 means GOMAXPROCS
	Prefetch  int    // batches made ahead of the consumer; 0 means 2·Workers
}

// Batch is a stack of augmented patches.
type Batch struct {
	Step      int
	Shape     [5]int    // N, C, D, H, W
	Image     []float32 // N·C·D·H·W
	Label     []uint8   // N·D·H·W; nil when the cases have no labels
	Locations []sample.Location
}

// Loader makes augmented batches from a sampler, in the background.
type Loader struct {
	s   *sample.Sampler
	cfg LoaderConfig

	made atomic.Int64 // batches built, for tests of the queue bound
}

// NewLoader returns a loader of batches drawn by s.
func NewLoader(s *sample.Sampler, cfg LoaderConfig) (*Loader, error) {
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("augment: batch size %d is not positive", cfg.BatchSize)
	}
	if cfg.Workers < 0 || cfg.Prefetch < 0 {
		return nil, fmt.Errorf("augment: workers %d and prefetch %d must not be negative", cfg.Workers, cfg.Prefetch)
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 2 * cfg.Workers
	}
	return &Loader{s: s, cfg: cfg}, nil
}

// Batch builds batch number step in the calling goroutine. The result
// depends only on the sampler, the configuration and step.
func (l *Loader) Batch(step int) Batch {
	l.made.Add(1)
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

// Run builds batches first, first+1, … (n of them, or without end when n
// ≤ 0) on the configured workers and delivers them in step order on the
// returned channel, which is closed after the last batch or once ctx is
// cancelled. At most Prefetch batches wait for the consumer.
func (l *Loader) Run(ctx context.Context, first, n int) <-chan Batch {
	out := make(chan Batch)
	type job struct {
		step int
		res  chan Batch
	}
	jobs := make(chan job)
	// pending holds the result slots in step order; its capacity bounds the
	// number of batches built ahead.
	pending := make(chan chan Batch, l.cfg.Prefetch)
	for range l.cfg.Workers {
		go func() {
			for j := range jobs {
				j.res <- l.Batch(j.step)
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(pending)
		for i := 0; n <= 0 || i < n; i++ {
			res := make(chan Batch, 1)
			select {
			case pending <- res:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{first + i, res}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer close(out)
		for res := range pending {
			var b Batch
			select {
			case b = <-res:
			case <-ctx.Done():
				return
			}
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
