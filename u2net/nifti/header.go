// Package nifti reads and writes NIfTI medical images (.nii and .nii.gz).
//
// It reads NIfTI-1 and NIfTI-2 single-file images of either byte order and
// writes NIfTI-1 little-endian. A volume of dims (nx, ny, nz[, nt]) is exposed
// as a float32 tensor [C=nt][D=nz][H=ny][W=nx] in file order (x fastest), with
// scl_slope/scl_inter already applied; nothing is transposed or reoriented.
// The voxel-to-world mapping is available as a 4×4 affine computed from the
// sform, the qform or pixdim, following the NIfTI-1 standard.
//
// Files are treated as untrusted input: every header field that sizes an
// allocation or a read is checked against what the file can actually hold, and
// problems are reported as *FormatError values naming the file and the field.
package nifti

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Datatype is a NIfTI datatype code.
type Datatype int16

// The supported datatypes.
const (
	Uint8   Datatype = 2
	Int16   Datatype = 4
	Int32   Datatype = 8
	Float32 Datatype = 16
	Float64 Datatype = 64
	Int8    Datatype = 256
	Uint16  Datatype = 512
)

// Size returns the number of bytes of one voxel, or 0 for an unsupported code.
func (d Datatype) Size() int {
	switch d {
	case Uint8, Int8:
		return 1
	case Int16, Uint16:
		return 2
	case Int32, Float32:
		return 4
	case Float64:
		return 8
	}
	return 0
}

func (d Datatype) String() string {
	switch d {
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int16:
		return "int16"
	case Uint16:
		return "uint16"
	case Int32:
		return "int32"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	}
	return fmt.Sprintf("datatype(%d)", int16(d))
}

// valueRange returns the values an integer datatype can hold.
func (d Datatype) valueRange() (lo, hi float64, integer bool) {
	switch d {
	case Uint8:
		return 0, math.MaxUint8, true
	case Int8:
		return math.MinInt8, math.MaxInt8, true
	case Int16:
		return math.MinInt16, math.MaxInt16, true
	case Uint16:
		return 0, math.MaxUint16, true
	case Int32:
		return math.MinInt32, math.MaxInt32, true
	}
	return math.Inf(-1), math.Inf(1), false
}

// Sizes of the two header versions, in bytes.
const (
	header1Size = 348
	header2Size = 540
)

// MaxVoxels bounds the number of voxels (all channels) of a volume this
// package reads or writes: 2^30 float32 values are 4 GiB.
const MaxVoxels = 1 << 30

// Header holds the fields of a NIfTI-1 or NIfTI-2 header in a version-neutral
// form. Fields of no use for 3D/4D images (intent, slice timing) are kept so
// that they survive a read-modify-write.
type Header struct {
	Version   int              // 1 or 2
	ByteOrder binary.ByteOrder // byte order of the file it was read from

	Dim       [8]int64   // dim[0] is the number of dimensions
	Pixdim    [8]float64 // pixdim[0] is qfac; pixdim[1..3] the voxel size
	Datatype  Datatype
	Bitpix    int
	VoxOffset int64

	SclSlope, SclInter float64
	CalMin, CalMax     float64

	IntentCode int
	IntentP    [3]float64
	IntentName string

	DimInfo       byte
	SliceCode     int
	SliceStart    int64
	SliceEnd      int64
	SliceDuration float64
	Toffset       float64
	XYZTUnits     int

	Descrip string
	AuxFile string

	QformCode, SformCode         int
	QuaternB, QuaternC, QuaternD float64
	QoffsetX, QoffsetY, QoffsetZ float64
	Srow                         [3][4]float64 // rows of the sform
}

// FormatError reports a malformed or unsupported file.
type FormatError struct {
	File  string // the file name given to the reader
	Field string // the header field or part of the file at fault
	Msg   string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("nifti: %s: %s: %s", e.File, e.Field, e.Msg)
}

func formatErr(file, field, format string, args ...any) error {
	return &FormatError{File: file, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Shape returns the tensor shape [C, D, H, W] of the volume the header
// describes: W = dim[1], H = dim[2], D = dim[3], C = dim[4]; dims past dim[0]
// count as 1. It assumes the header was validated.
func (h *Header) Shape() [4]int {
	d := func(i int) int {
		if int64(i) > h.Dim[0] || h.Dim[i] < 1 {
			return 1
		}
		return int(h.Dim[i])
	}
	return [4]int{d(4), d(3), d(2), d(1)}
}

// Spacing returns the voxel size (x, y, z) from pixdim[1..3], in the file's
// spatial unit (usually mm). Missing, zero or non-finite values count as 1 and
// negative ones by their magnitude, as the NIfTI-1 standard reads them.
func (h *Header) Spacing() [3]float64 {
	var s [3]float64
	for i := range s {
		s[i] = pixdimValue(h.Pixdim[i+1])
	}
	return s
}

// SpacingDHW returns Spacing in tensor order (z, y, x).
func (h *Header) SpacingDHW() [3]float64 {
	s := h.Spacing()
	return [3]float64{s[2], s[1], s[0]}
}

func pixdimValue(v float64) float64 {
	v = math.Abs(v)
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	return v
}

// validate checks the fields that size the data and returns the number of
// voxels (all channels). It does not look at the file size.
func (h *Header) validate(file string) (int64, error) {
	if h.Dim[0] < 1 || h.Dim[0] > 7 {
		return 0, formatErr(file, "dim[0]", "number of dimensions %d is outside 1..7", h.Dim[0])
	}
	n := int64(1)
	for i := 1; i <= int(h.Dim[0]); i++ {
		d := h.Dim[i]
		if d < 1 {
			return 0, formatErr(file, fmt.Sprintf("dim[%d]", i), "size %d is not positive", d)
		}
		if i > 4 && d != 1 {
			return 0, formatErr(file, fmt.Sprintf("dim[%d]", i), "size %d: only 3D and 4D images are supported", d)
		}
		if d > MaxVoxels || n*d > MaxVoxels {
			return 0, formatErr(file, fmt.Sprintf("dim[%d]", i), "size %d makes more than %d voxels", d, MaxVoxels)
		}
		n *= d
	}
	if h.Datatype.Size() == 0 {
		return 0, formatErr(file, "datatype", "unsupported datatype code %d", int16(h.Datatype))
	}
	min := int64(header1Size + 4)
	if h.Version == 2 {
		min = header2Size + 4
	}
	if h.VoxOffset < min {
		return 0, formatErr(file, "vox_offset", "offset %d is before the end of the header (%d)", h.VoxOffset, min)
	}
	if math.IsInf(h.SclSlope, 0) {
		return 0, formatErr(file, "scl_slope", "slope is infinite")
	}
	if h.scaled() && (math.IsNaN(h.SclInter) || math.IsInf(h.SclInter, 0)) {
		return 0, formatErr(file, "scl_inter", "intercept %v is not finite", h.SclInter)
	}
	return n, nil
}

// scaled reports whether scl_slope/scl_inter change the stored values.
func (h *Header) scaled() bool {
	s := h.SclSlope
	if s == 0 || math.IsNaN(s) {
		return false
	}
	return s != 1 || (h.SclInter != 0 && !math.IsNaN(h.SclInter))
}

// detectHeader inspects the first four bytes (sizeof_hdr) and returns the
// header version and byte order.
func detectHeader(b []byte) (version int, order binary.ByteOrder, ok bool) {
	le := binary.LittleEndian.Uint32(b)
	be := binary.BigEndian.Uint32(b)
	switch {
	case le == header1Size:
		return 1, binary.LittleEndian, true
	case be == header1Size:
		return 1, binary.BigEndian, true
	case le == header2Size:
		return 2, binary.LittleEndian, true
	case be == header2Size:
		return 2, binary.BigEndian, true
	}
	return 0, nil, false
}

// cstring returns the bytes of b up to the first NUL.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// parseHeader1 decodes a 348-byte NIfTI-1 header.
func parseHeader1(b []byte, o binary.ByteOrder, file string) (*Header, error) {
	magic := b[344:348]
	switch string(magic) {
	case "n+1\x00":
	case "ni1\x00":
		return nil, formatErr(file, "magic", "two-file NIfTI (.hdr/.img) is not supported")
	default:
		return nil, formatErr(file, "magic", "%q is not a NIfTI-1 single-file magic", magic)
	}
	i16 := func(off int) int64 { return int64(int16(o.Uint16(b[off:]))) }
	f32 := func(off int) float64 { return float64(math.Float32frombits(o.Uint32(b[off:]))) }
	h := &Header{Version: 1, ByteOrder: o}
	for i := range h.Dim {
		h.Dim[i] = i16(40 + 2*i)
		h.Pixdim[i] = f32(76 + 4*i)
	}
	for i := range h.IntentP {
		h.IntentP[i] = f32(56 + 4*i)
	}
	h.IntentCode = int(i16(68))
	h.Datatype = Datatype(i16(70))
	h.Bitpix = int(i16(72))
	h.SliceStart = i16(74)
	vox := f32(108)
	if math.IsNaN(vox) || vox < 0 || vox > math.MaxInt32 || vox != math.Trunc(vox) {
		return nil, formatErr(file, "vox_offset", "%v is not a valid byte offset", vox)
	}
	h.VoxOffset = int64(vox)
	h.SclSlope = f32(112)
	h.SclInter = f32(116)
	h.SliceEnd = i16(120)
	h.SliceCode = int(b[122])
	h.XYZTUnits = int(b[123])
	h.CalMax = f32(124)
	h.CalMin = f32(128)
	h.SliceDuration = f32(132)
	h.Toffset = f32(136)
	h.Descrip = cstring(b[148:228])
	h.AuxFile = cstring(b[228:252])
	h.QformCode = int(i16(252))
	h.SformCode = int(i16(254))
	h.QuaternB, h.QuaternC, h.QuaternD = f32(256), f32(260), f32(264)
	h.QoffsetX, h.QoffsetY, h.QoffsetZ = f32(268), f32(272), f32(276)
	for r := range 3 {
		for c := range 4 {
			h.Srow[r][c] = f32(280 + 16*r + 4*c)
		}
	}
	h.IntentName = cstring(b[328:344])
	h.DimInfo = b[39]
	return h, nil
}

// parseHeader2 decodes a 540-byte NIfTI-2 header.
func parseHeader2(b []byte, o binary.ByteOrder, file string) (*Header, error) {
	magic := b[4:12]
	switch string(magic[:4]) {
	case "n+2\x00":
	case "ni2\x00":
		return nil, formatErr(file, "magic", "two-file NIfTI (.hdr/.img) is not supported")
	default:
		return nil, formatErr(file, "magic", "%q is not a NIfTI-2 single-file magic", magic)
	}
	i64 := func(off int) int64 { return int64(o.Uint64(b[off:])) }
	i32 := func(off int) int { return int(int32(o.Uint32(b[off:]))) }
	f64 := func(off int) float64 { return math.Float64frombits(o.Uint64(b[off:])) }
	h := &Header{Version: 2, ByteOrder: o}
	h.Datatype = Datatype(int16(o.Uint16(b[12:])))
	h.Bitpix = int(int16(o.Uint16(b[14:])))
	for i := range h.Dim {
		h.Dim[i] = i64(16 + 8*i)
		h.Pixdim[i] = f64(104 + 8*i)
	}
	for i := range h.IntentP {
		h.IntentP[i] = f64(80 + 8*i)
	}
	h.VoxOffset = i64(168)
	h.SclSlope = f64(176)
	h.SclInter = f64(184)
	h.CalMax = f64(192)
	h.CalMin = f64(200)
	h.SliceDuration = f64(208)
	h.Toffset = f64(216)
	h.SliceStart = i64(224)
	h.SliceEnd = i64(232)
	h.Descrip = cstring(b[240:320])
	h.AuxFile = cstring(b[320:344])
	h.QformCode = i32(344)
	h.SformCode = i32(348)
	h.QuaternB, h.QuaternC, h.QuaternD = f64(352), f64(360), f64(368)
	h.QoffsetX, h.QoffsetY, h.QoffsetZ = f64(376), f64(384), f64(392)
	for r := range 3 {
		for c := range 4 {
			h.Srow[r][c] = f64(400 + 32*r + 8*c)
		}
	}
	h.SliceCode = i32(496)
	h.XYZTUnits = i32(500)
	h.IntentCode = i32(504)
	h.IntentName = cstring(b[508:524])
	h.DimInfo = b[524]
	return h, nil
}

// encode1 returns h as a little-endian NIfTI-1 header followed by an empty
// extension flag, 352 bytes in all. Values that do not fit the NIfTI-1 field
// widths give an error.
func (h *Header) encode1(file string) ([]byte, error) {
	b := make([]byte, header1Size+4)
	o := binary.LittleEndian
	put16 := func(off int, v int64, field string) error {
		if v < math.MinInt16 || v > math.MaxInt16 {
			return formatErr(file, field, "value %d does not fit NIfTI-1's 16-bit field", v)
		}
		o.PutUint16(b[off:], uint16(int16(v)))
		return nil
	}
	putF := func(off int, v float64) { o.PutUint32(b[off:], math.Float32bits(float32(v))) }
	putS := func(off, n int, s string) {
		if len(s) > n-1 {
			s = s[:n-1]
		}
		copy(b[off:off+n], s)
	}
	o.PutUint32(b[0:], header1Size)
	b[38] = 'r'
	b[39] = h.DimInfo
	for i := range h.Dim {
		if err := put16(40+2*i, h.Dim[i], fmt.Sprintf("dim[%d]", i)); err != nil {
			return nil, err
		}
		putF(76+4*i, h.Pixdim[i])
	}
	for i := range h.IntentP {
		putF(56+4*i, h.IntentP[i])
	}
	if err := put16(68, int64(h.IntentCode), "intent_code"); err != nil {
		return nil, err
	}
	o.PutUint16(b[70:], uint16(h.Datatype))
	o.PutUint16(b[72:], uint16(h.Bitpix))
	if err := put16(74, h.SliceStart, "slice_start"); err != nil {
		return nil, err
	}
	putF(108, float64(h.VoxOffset))
	putF(112, h.SclSlope)
	putF(116, h.SclInter)
	if err := put16(120, h.SliceEnd, "slice_end"); err != nil {
		return nil, err
	}
	b[122] = byte(h.SliceCode)
	b[123] = byte(h.XYZTUnits)
	putF(124, h.CalMax)
	putF(128, h.CalMin)
	putF(132, h.SliceDuration)
	putF(136, h.Toffset)
	putS(148, 80, h.Descrip)
	putS(228, 24, h.AuxFile)
	if err := put16(252, int64(h.QformCode), "qform_code"); err != nil {
		return nil, err
	}
	if err := put16(254, int64(h.SformCode), "sform_code"); err != nil {
		return nil, err
	}
	putF(256, h.QuaternB)
	putF(260, h.QuaternC)
	putF(264, h.QuaternD)
	putF(268, h.QoffsetX)
	putF(272, h.QoffsetY)
	putF(276, h.QoffsetZ)
	for r := range 3 {
		for c := range 4 {
			putF(280+16*r+4*c, h.Srow[r][c])
		}
	}
	putS(328, 16, h.IntentName)
	copy(b[344:348], "n+1\x00")
	return b, nil
}
