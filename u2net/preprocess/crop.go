package preprocess

// Box is a half-open box of voxels [Lo, Hi) in tensor order (D, H, W).
type Box struct {
	Lo [3]int `json:"lo"`
	Hi [3]int `json:"hi"`
}

// Shape returns the box's size per axis.
func (b Box) Shape() [3]int {
	return [3]int{b.Hi[0] - b.Lo[0], b.Hi[1] - b.Lo[1], b.Hi[2] - b.Lo[2]}
}

// nonZeroBox returns the smallest box holding every voxel that is non-zero
// in at least one channel of img ([C, D, H, W]), and the mask of those
// voxels. An all-zero image gives the whole volume.
func nonZeroBox(img []float32, shape [4]int) (Box, []bool) {
	d, h, w := shape[1], shape[2], shape[3]
	n := d * h * w
	mask := make([]bool, n)
	for c := range shape[0] {
		for i, v := range img[c*n : (c+1)*n] {
			if v != 0 {
				mask[i] = true
			}
		}
	}
	b := Box{Lo: [3]int{d, h, w}}
	i := 0
	for z := range d {
		for y := range h {
			for x := range w {
				if mask[i] {
					b.Lo = [3]int{min(b.Lo[0], z), min(b.Lo[1], y), min(b.Lo[2], x)}
					b.Hi = [3]int{max(b.Hi[0], z+1), max(b.Hi[1], y+1), max(b.Hi[2], x+1)}
				}
				i++
			}
		}
	}
	if b.Hi[0] == 0 {
		b = Box{Hi: [3]int{d, h, w}}
	}
	return b, mask
}

// cropChannels copies box b out of each of the c channels of src, whose
// channel shape is s.
func cropChannels[T any](src []T, c int, s [3]int, b Box) []T {
	bs := b.Shape()
	n := s[0] * s[1] * s[2]
	dst := make([]T, 0, c*bs[0]*bs[1]*bs[2])
	for ch := range c {
		in := src[ch*n : (ch+1)*n]
		for z := b.Lo[0]; z < b.Hi[0]; z++ {
			for y := b.Lo[1]; y < b.Hi[1]; y++ {
				off := (z*s[1]+y)*s[2] + b.Lo[2]
				dst = append(dst, in[off:off+bs[2]]...)
			}
		}
	}
	return dst
}

// uncropChannels places each of the c channels of src (box b's shape) into
// a volume of channel shape s; voxels outside the box get fill(channel).
// A box of the whole volume returns src itself.
func uncropChannels[T any](src []T, c int, s [3]int, b Box, fill func(ch int) T) []T {
	if b.Lo == [3]int{} && b.Hi == s {
		return src
	}
	bs := b.Shape()
	n := s[0] * s[1] * s[2]
	bn := bs[0] * bs[1] * bs[2]
	dst := make([]T, c*n)
	for ch := range c {
		out := dst[ch*n : (ch+1)*n]
		f := fill(ch)
		for i := range out {
			out[i] = f
		}
		in := src[ch*bn : (ch+1)*bn]
		i := 0
		for z := b.Lo[0]; z < b.Hi[0]; z++ {
			for y := b.Lo[1]; y < b.Hi[1]; y++ {
				off := (z*s[1]+y)*s[2] + b.Lo[2]
				copy(out[off:off+bs[2]], in[i:i+bs[2]])
				i += bs[2]
			}
		}
	}
	return dst
}
