package train

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/u2net-vk/u2net/u2net/augment"
	"github.com/u2net-vk/u2net/u2net/internal/par"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/sample"
)

// BenchmarkBatchesAhead feeds 8 steps of the reference setting (two 128³
// patches a batch, default augmentation) to a device simulated by an 80 ms
// wait per step, the step time measured on an H200: "inTurn" builds each
// batch before its step, "ahead" as the trainer does, while earlier steps
// run.
func BenchmarkBatchesAhead(b *testing.B) {
	const steps, stepTime = 8, 80 * time.Millisecond
	shape := [3]int{160, 160, 160}
	n := shape[0] * shape[1] * shape[2]
	c := &preprocess.Case{Shape: [4]int{1, shape[0], shape[1], shape[2]}, Image: make([]float32, n), Label: make([]uint8, n)}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		c.Image[i] = float32(rng.NormFloat64())
		c.Label[i] = uint8(rng.IntN(3))
	}
	s, err := sample.New([]*preprocess.Case{c}, [3]int{128, 128, 128}, sample.Options{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	l, err := augment.NewLoader(s, augment.LoaderConfig{BatchSize: 2, Params: augment.DefaultParams(), Seed: 2})
	if err != nil {
		b.Fatal(err)
	}
	r := &runner{doms: []*domainData{{loader: l}}}
	b.Run("inTurn", func(b *testing.B) {
		for b.Loop() {
			for step := range steps {
				r.batch(step)
				time.Sleep(stepTime)
			}
		}
	})
	b.Run("ahead", func(b *testing.B) {
		workers := r.batchWorkers()
		for b.Loop() {
			for range par.Ordered(context.Background(), 0, steps, workers, workers, r.batch) {
				time.Sleep(stepTime)
			}
		}
	})
}
