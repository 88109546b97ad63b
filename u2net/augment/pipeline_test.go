package augment

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/u2net-vk/u2net/u2net/dataset"
	"github.com/u2net-vk/u2net/u2net/preprocess"
	"github.com/u2net-vk/u2net/u2net/sample"
	"github.com/u2net-vk/u2net/u2net/synth"
)

// TestPipeline runs the data path end to end: synthetic domains, dataset,
// plan, cached preprocessing, sampling and augmentation.
func TestPipeline(t *testing.T) {
	dir := t.TempDir()
	infos, err := synth.Write(filepath.Join(dir, "data"), synth.Config{Seed: 1, Cases: 3, TestCases: 1, Size: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		ds, err := dataset.Open(info.Dir)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := preprocess.NewPlan(ds, preprocess.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cases, err := plan.LoadAll(context.Background(), ds, ds.Training, filepath.Join(dir, "cache"), 2)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sample.New(cases, [3]int{8, 16, 16}, sample.Options{Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewLoader(s, LoaderConfig{BatchSize: 3, Params: DefaultParams(), Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		for step := range 2 {
			b := l.Batch(step)
			if b.Shape != [5]int{3, ds.NumChannels(), 8, 16, 16} {
				t.Fatalf("%s: batch shape %v", info.Name, b.Shape)
			}
			fg := false
			for _, v := range b.Label[2*8*16*16:] {
				fg = fg || v > 0
			}
			if !fg {
				t.Errorf("%s: step %d: the foreground patch holds no foreground", info.Name, b.Step)
			}
		}
	}
}
