package ops

import (
	"errors"
	"fmt"
	"testing"
)

// The reference engine's memory limit counts what is allocated at once:
// tensors, label tensors and packed tensors (whose parts free nothing of
// their own), and freeing makes room again.
func TestCPUMemoryLimit(t *testing.T) {
	c := NewCPU()
	c.MemoryLimit = 4 * 100
	a, err := c.Alloc(60)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.AllocLabels(20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Alloc(21); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("Alloc past the limit: %v, want ErrOutOfMemory", err)
	}
	whole, parts, err := c.AllocPacked([]int{10, 10})
	if err != nil {
		t.Fatal(err)
	}
	c.Free(parts[0])
	c.Free(parts[1])
	if _, _, err := c.AllocPacked([]int{1}); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("AllocPacked past the limit after freeing parts: %v, want ErrOutOfMemory", err)
	}
	c.Free(whole)
	c.Free(a)
	c.Free(a) // twice: counted once
	c.Free(l)
	if b, err := c.Alloc(100); err != nil {
		t.Fatalf("Alloc of the whole limit after freeing everything: %v", err)
	} else if _, err := c.Alloc(1); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("Alloc past a full limit: %v, want ErrOutOfMemory", err)
	} else {
		c.Free(b)
	}
}

func TestDoesNotFit(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("bad shape"), false},
		{fmt.Errorf("building: %w", ErrOutOfMemory), true},
		{fmt.Errorf("alloc: %w", fmt.Errorf("vk: %w", ErrTooLarge)), true},
	} {
		if got := DoesNotFit(c.err); got != c.want {
			t.Errorf("DoesNotFit(%v) = %t, want %t", c.err, got, c.want)
		}
	}
}
