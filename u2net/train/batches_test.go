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
// wait per step (a fast GPU's step at that setting): "inTurn" builds each
// batch before its step, "ahead" as the trainer does, while earlier steps
// run; each in the buffers of the steps done, as the trainer does.
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
				b := r.batch(step)
				time.Sleep(stepTime)
				r.spare.Put(b)
			}
		}
	})
	b.Run("ahead", func(b *testing.B) {
		workers := r.batchWorkers()
		for b.Loop() {
			for b := range par.Ordered(context.Background(), 0, steps, workers, workers, r.batch) {
				time.Sleep(stepTime)
				r.spare.Put(b)
			}
		}
	})
}

// BenchmarkScoreCase scores one validation case of 150×200×200 voxels with
// two foreground classes (Dice as predicted and with each class's largest
// component), the host's work per case that validation overlaps with the
// device segmenting the next.
func BenchmarkScoreCase(b *testing.B) {
	shape := [3]int{150, 200, 200}
	n := shape[0] * shape[1] * shape[2]
	c := &preprocess.Case{Shape: [4]int{1, shape[0], shape[1], shape[2]}, Label: make([]uint8, n)}
	labels := make([]uint8, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for z := range shape[0] {
		for y := range shape[1] {
			for x := range shape[2] {
				i := (z*shape[1]+y)*shape[2] + x
				dz, dy, dx := z-75, y-100, x-100
				if dz*dz+dy*dy+dx*dx < 60*60 {
					c.Label[i] = 1
					if dx > 20 {
						c.Label[i] = 2
					}
				}
				labels[i] = c.Label[i]
				if rng.IntN(50) == 0 { // scattered errors: many small components
					labels[i] = uint8(rng.IntN(3))
				}
			}
		}
	}
	for b.Loop() {
		if sc := scoreCase(labels, c, 3); sc.err != nil {
			b.Fatal(sc.err)
		}
	}
}
