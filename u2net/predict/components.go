package predict

import (
	"fmt"
	"sync"
)

// KeepLargestComponents keeps, of each of the given classes of a label map
// [D][H][W], only its largest 26-connected component (the first met in
// memory order among equals) and makes the voxels of its other components
// background (0): the segmentation of an organ, which is one piece, then
// loses the islands that the network scattered elsewhere. (A structure of
// several pieces, a vessel tree or scattered lesions, would lose pieces.)
// It returns the voxels it cleared.
func KeepLargestComponents(labels []uint8, shape [3]int, classes []uint8) (int, error) {
	n := shape[0] * shape[1] * shape[2]
	if len(labels) != n || min(shape[0], shape[1], shape[2]) < 1 {
		return 0, fmt.Errorf("predict: %d labels for a label map of shape %v", len(labels), shape)
	}
	var chosen [256]bool
	var list []uint8
	for _, c := range classes {
		if c != 0 && !chosen[c] {
			chosen[c] = true
			list = append(list, c)
		}
	}
	// Each class is searched on its own goroutine, reading labels only;
	// the voxels are cleared once all are done.
	var keepOf [256]bitset
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(func() { keepOf[c] = largestComponent(labels, shape, c) })
	}
	wg.Wait()
	cleared := 0
	for i, c := range labels {
		if chosen[c] && !keepOf[c].has(i) {
			labels[i] = 0
			cleared++
		}
	}
	return cleared, nil
}

// largestComponent returns the voxels of the largest 26-connected component
// of class c (the first met in memory order among equals); none when the
// class is absent.
func largestComponent(labels []uint8, shape [3]int, c uint8) bitset {
	n := len(labels)
	seen := newBitset(n)
	var queue []int
	best, seed := 0, -1
	for i, l := range labels {
		if l != c || seen.has(i) {
			continue
		}
		var size int
		queue, size = flood(labels, shape, i, seen, queue)
		if size > best {
			best, seed = size, i
		}
	}
	keep := newBitset(n)
	if seed >= 0 {
		flood(labels, shape, seed, keep, queue)
	}
	return keep
}

// flood marks in mark the 26-connected component of start's class that
// holds start, and returns its size; queue is scratch space, returned for
// reuse.
func flood(labels []uint8, shape [3]int, start int, mark bitset, queue []int) ([]int, int) {
	c := labels[start]
	d, h, w := shape[0], shape[1], shape[2]
	queue = append(queue[:0], start)
	mark.set(start)
	for head := 0; head < len(queue); head++ {
		v := queue[head]
		z, y, x := v/(h*w), v/w%h, v%w
		for dz := -1; dz <= 1; dz++ {
			zz := z + dz
			if zz < 0 || zz >= d {
				continue
			}
			for dy := -1; dy <= 1; dy++ {
				yy := y + dy
				if yy < 0 || yy >= h {
					continue
				}
				for dx := -1; dx <= 1; dx++ {
					xx := x + dx
					if xx < 0 || xx >= w {
						continue
					}
					u := (zz*h+yy)*w + xx
					if labels[u] == c && !mark.has(u) {
						mark.set(u)
						queue = append(queue, u)
					}
				}
			}
		}
	}
	return queue, len(queue)
}

// bitset is one bit per voxel.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (i & 63) }
