package nifti

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Volume is a decoded image: the header it was read with and its voxels as a
// float32 tensor of shape [C, D, H, W] (W fastest), scaling applied.
type Volume struct {
	Header Header
	Shape  [4]int // C, D, H, W
	Data   []float32
}

// Affine returns the voxel-to-world matrix of the volume's header.
func (v *Volume) Affine() Affine { return v.Header.Affine() }

// Spacing returns the voxel size (x, y, z) of the volume's header.
func (v *Volume) Spacing() [3]float64 { return v.Header.Spacing() }

// Len returns the number of voxels of one channel.
func (v *Volume) Len() int { return v.Shape[1] * v.Shape[2] * v.Shape[3] }

// Channel returns the voxels of channel c, sharing v.Data.
func (v *Volume) Channel(c int) []float32 {
	n := v.Len()
	return v.Data[c*n : (c+1)*n : (c+1)*n]
}

// Voxel returns the (x, y, z) index, in file order, of element i of a
// channel.
func (v *Volume) Voxel(i int) [3]int {
	s := v.Shape
	return [3]int{i % s[3], (i / s[3]) % s[2], i / (s[3] * s[2])}
}

// CheckFinite returns an error naming the first voxel that holds NaN or an
// infinity: the network's instance norms would spread it over every voxel
// of the channels it reaches.
func (v *Volume) CheckFinite() error {
	for i, f := range v.Data {
		if x := float64(f); math.IsNaN(x) || math.IsInf(x, 0) {
			n := v.Len()
			return fmt.Errorf("the image holds %v at channel %d voxel %v (x, y, z)", f, i/n, v.Voxel(i%n))
		}
	}
	return nil
}

// maxGzipRatio bounds how many bytes deflate can expand one compressed byte
// to (the format's limit is about 1032); it caps what a .gz file may hold.
const maxGzipRatio = 1100

// ReadFile reads a .nii or .nii.gz file. Compression is detected from the
// content, not the name.
func ReadFile(path string) (*Volume, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nifti: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("nifti: %w", err)
	}
	return decode(f, st.Size(), path)
}

// ReadHeader reads only the header of a .nii or .nii.gz file and checks it.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nifti: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("nifti: %w", err)
	}
	r, _, err := openStream(f, st.Size(), path)
	if err != nil {
		return nil, err
	}
	h, _, err := readHeader(r, path)
	return h, err
}

// Read decodes a NIfTI stream (plain or gzip-compressed); name is used in
// errors. When r has a Size method (bytes.Reader, strings.Reader) or is an
// *os.File, the size bounds what the header may claim.
func Read(r io.Reader, name string) (*Volume, error) {
	size := int64(-1)
	switch s := r.(type) {
	case interface{ Size() int64 }:
		size = s.Size()
	case *os.File:
		if st, err := s.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
	}
	return decode(r, size, name)
}

// openStream wraps r in a gzip reader when it starts with the gzip magic and
// returns the uncompressed stream limited to what the input can hold.
// limit is that bound, or -1 when size is unknown.
func openStream(r io.Reader, size int64, file string) (io.Reader, int64, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil {
		return nil, 0, formatErr(file, "header", "file is empty or unreadable: %v", err)
	}
	limit := size
	var s io.Reader = br
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, formatErr(file, "gzip", "%v", err)
		}
		s = zr
		if size >= 0 {
			limit = size * maxGzipRatio
		}
	}
	if limit >= 0 {
		s = &io.LimitedReader{R: s, N: limit}
	}
	return s, limit, nil
}

// readHeader reads and checks the header and returns it with the number of
// voxels it describes; it consumes exactly the header bytes.
func readHeader(r io.Reader, file string) (*Header, int64, error) {
	buf := make([]byte, header2Size)
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return nil, 0, formatErr(file, "header", "truncated: %v", err)
	}
	version, order, ok := detectHeader(buf[:4])
	if !ok {
		return nil, 0, formatErr(file, "sizeof_hdr", "got %d (or %d byte-swapped); want 348 (NIfTI-1) or 540 (NIfTI-2)",
			binary.LittleEndian.Uint32(buf), binary.BigEndian.Uint32(buf))
	}
	hsize := header1Size
	if version == 2 {
		hsize = header2Size
	}
	if _, err := io.ReadFull(r, buf[4:hsize]); err != nil {
		return nil, 0, formatErr(file, "header", "truncated: the NIfTI-%d header needs %d bytes", version, hsize)
	}
	var h *Header
	var err error
	if version == 1 {
		h, err = parseHeader1(buf[:hsize], order, file)
	} else {
		h, err = parseHeader2(buf[:hsize], order, file)
	}
	if err != nil {
		return nil, 0, err
	}
	n, err := h.validate(file)
	if err != nil {
		return nil, 0, err
	}
	return h, n, nil
}

func decode(r io.Reader, size int64, file string) (*Volume, error) {
	s, limit, err := openStream(r, size, file)
	if err != nil {
		return nil, err
	}
	h, n, err := readHeader(s, file)
	if err != nil {
		return nil, err
	}
	bpv := int64(h.Datatype.Size())
	need := n * bpv
	hsize := int64(header1Size)
	if h.Version == 2 {
		hsize = header2Size
	}
	if limit >= 0 && h.VoxOffset > limit {
		return nil, formatErr(file, "vox_offset", "offset %d is past the end of the file (%d bytes at most)", h.VoxOffset, limit)
	}
	if limit >= 0 && h.VoxOffset+need > limit {
		return nil, formatErr(file, "dim", "dims %v of %s need %d data bytes at offset %d; the file holds at most %d bytes",
			h.Dim[1:h.Dim[0]+1], h.Datatype, need, h.VoxOffset, limit)
	}
	if _, err := io.CopyN(io.Discard, s, h.VoxOffset-hsize); err != nil {
		return nil, formatErr(file, "vox_offset", "file ends before the data offset %d: %v", h.VoxOffset, unexpected(err))
	}
	// ReadAll grows its buffer as data arrives, so a header that claims more
	// than the stream holds costs no more memory than the stream itself.
	raw, err := io.ReadAll(io.LimitReader(s, need))
	if err != nil {
		return nil, formatErr(file, "data", "%v", err)
	}
	if int64(len(raw)) < need {
		return nil, formatErr(file, "data", "truncated: dims %v of %s need %d bytes, the file holds %d",
			h.Dim[1:h.Dim[0]+1], h.Datatype, need, len(raw))
	}
	v := &Volume{Header: *h, Shape: h.Shape(), Data: make([]float32, n)}
	convert(v.Data, raw, h)
	return v, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// convert decodes raw voxels into dst and applies the header's scaling.
func convert(dst []float32, raw []byte, h *Header) {
	o := h.ByteOrder
	switch h.Datatype {
	case Uint8:
		for i := range dst {
			dst[i] = float32(raw[i])
		}
	case Int8:
		for i := range dst {
			dst[i] = float32(int8(raw[i]))
		}
	case Int16:
		for i := range dst {
			dst[i] = float32(int16(o.Uint16(raw[2*i:])))
		}
	case Uint16:
		for i := range dst {
			dst[i] = float32(o.Uint16(raw[2*i:]))
		}
	case Int32:
		if h.scaled() {
			// Scale in float64 so large integers keep their precision.
			for i := range dst {
				dst[i] = float32(float64(int32(o.Uint32(raw[4*i:])))*h.SclSlope + h.SclInter)
			}
			return
		}
		for i := range dst {
			dst[i] = float32(int32(o.Uint32(raw[4*i:])))
		}
	case Float32:
		for i := range dst {
			dst[i] = math.Float32frombits(o.Uint32(raw[4*i:]))
		}
	case Float64:
		if h.scaled() {
			for i := range dst {
				dst[i] = float32(math.Float64frombits(o.Uint64(raw[8*i:]))*h.SclSlope + h.SclInter)
			}
			return
		}
		for i := range dst {
			dst[i] = float32(math.Float64frombits(o.Uint64(raw[8*i:])))
		}
	}
	if h.scaled() {
		slope, inter := h.SclSlope, h.SclInter
		if math.IsNaN(inter) {
			inter = 0
		}
		for i, x := range dst {
			dst[i] = float32(float64(x)*slope + inter)
		}
	}
}
