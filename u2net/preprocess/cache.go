package preprocess

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/u2net-vk/u2net/u2net/dataset"
)

// cacheMagic starts every cache file; its last byte is the format version.
const cacheMagic = "U2NPREP2"

// cacheAlign is the alignment of the image within a cache file, so that a
// mapped file serves the image in place as float32s.
const cacheAlign = 8

// Key returns the cache key of a case under this plan: a hash of the plan,
// the case ID and the path, size and modification time of its files. It
// changes whenever any of them changes.
func (p *Plan) Key(c dataset.Case) (string, error) {
	pj, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", cacheMagic, pj, c.ID)
	for _, f := range []string{c.Image, c.Label} {
		if err := hashFile(h, c.ID, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// hashFile writes the path, size and modification time of file f of case
// id into h ("-" for no file).
func hashFile(h io.Writer, id, f string) error {
	if f == "" {
		io.WriteString(h, "-\x00")
		return nil
	}
	st, err := os.Stat(f)
	if err != nil {
		return fmt.Errorf("preprocess: case %s: %w", id, err)
	}
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00", f, st.Size(), st.ModTime().UnixNano())
	return nil
}

// cachePath returns the cache file of case c under key.
func cachePath(dir, domain, id, key string) string {
	return filepath.Join(dir, safeName(domain), safeName(id)+"-"+key+".u2p")
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// Load returns case c of ds preprocessed by p, from the cache folder dir
// when an entry with the current key exists, else by loading and applying
// the plan and storing the result (atomically, replacing older entries of
// the case). An empty dir disables the cache. An unreadable or corrupt
// entry is recomputed.
func (p *Plan) Load(ds *dataset.Dataset, c dataset.Case, dir string) (*Case, error) {
	if dir == "" {
		s, err := ds.Load(c)
		if err != nil {
			return nil, err
		}
		return p.Apply(s)
	}
	key, err := p.Key(c)
	if err != nil {
		return nil, err
	}
	path := cachePath(dir, p.Domain, c.ID, key)
	if pc, err := readCache(path); err == nil && pc.ID == c.ID {
		return pc, nil
	}
	s, err := ds.Load(c)
	if err != nil {
		return nil, err
	}
	pc, err := p.Apply(s)
	if err != nil {
		return nil, err
	}
	if err := writeCache(path, pc); err != nil {
		return nil, err
	}
	// Drop entries of this case made under other keys.
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(safeName(c.ID))+"-"+strings.Repeat("[0-9a-f]", 32)+".u2p"))
	for _, f := range stale {
		if f != path {
			os.Remove(f)
		}
	}
	// The case as the cache serves it (mapped where the host can), so that
	// a first run does not keep its cases on the heap either.
	if mapped, err := readCache(path); err == nil {
		return mapped, nil
	}
	return pc, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LoadAll loads cases with Load on up to workers goroutines (at least one)
// and returns them in the order given. It stops at the first error or when
// ctx is cancelled.
func (p *Plan) LoadAll(ctx context.Context, ds *dataset.Dataset, cases []dataset.Case, dir string, workers int) ([]*Case, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]*Case, len(cases))
	errs := make([]error, len(cases))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = p.Load(ds, cases[i], dir)
				if errs[i] != nil {
					cancel()
				}
			}
		}()
	}
feed:
	for i := range cases {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	for i := range out {
		if out[i] == nil {
			return nil, fmt.Errorf("preprocess: loading case %s: %w", cases[i].ID, ctx.Err())
		}
	}
	return out, nil
}

// cacheMeta is the JSON part of a cache file.
type cacheMeta struct {
	ID       string   `json:"id"`
	Shape    [4]int   `json:"shape"`
	HasLabel bool     `json:"has_label"`
	Geometry Geometry `json:"geometry"`
}

// The cache file is: magic, uint32 JSON length, JSON (padded with spaces so
// that the image starts at a multiple of cacheAlign), float32 image, uint8
// label, uint32 CRC-32 of everything before it (little-endian).
func writeCache(path string, c *Case) error {
	meta, err := json.Marshal(cacheMeta{ID: c.ID, Shape: c.Shape, HasLabel: c.Label != nil, Geometry: c.Geometry})
	if err != nil {
		return err
	}
	for (len(cacheMagic)+4+len(meta))%cacheAlign != 0 {
		meta = append(meta, ' ')
	}
	// Streamed through the checksum in blocks: a large case is not copied
	// whole (a 450 MB image would take twice that again).
	write := func(f io.Writer) error {
		crc := crc32.NewIEEE()
		w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
		w.WriteString(cacheMagic)
		binary.Write(w, binary.LittleEndian, uint32(len(meta)))
		w.Write(meta)
		var block [4096]byte
		for i := 0; i < len(c.Image); i += len(block) / 4 {
			n := min(len(block)/4, len(c.Image)-i)
			for j, v := range c.Image[i : i+n] {
				binary.LittleEndian.PutUint32(block[4*j:], math.Float32bits(v))
			}
			w.Write(block[:4*n])
		}
		w.Write(c.Label)
		if err := w.Flush(); err != nil {
			return err
		}
		return binary.Write(f, binary.LittleEndian, crc.Sum32())
	}
	if err := writeFileAtomic(path, write); err != nil {
		return fmt.Errorf("preprocess: cache: %w", err)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in its folder
// (created if missing) that replaces it only once complete: a reader sees
// the old file or the new one, and a mapped old file keeps its contents.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

// readCache returns the case of a cache file. Where the host can, the file
// is mapped into memory (privately: writes to the case stay in the process)
// and the case's image and label are views of it, so that the cases of a
// training run live in the page cache, which the kernel can reclaim, rather
// than on the heap; the mapping lasts as long as the process. Cache files
// are replaced by renaming, never rewritten in place, so a mapped file keeps
// its contents.
func readCache(path string) (*Case, error) {
	b, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	c, err := decodeCache(b, path)
	if err != nil {
		unmap()
		return nil, err
	}
	return c, nil
}

// decodeCache checks and decodes the bytes of a cache file; the case refers
// to b where the layout allows.
func decodeCache(b []byte, path string) (*Case, error) {
	corrupt := fmt.Errorf("preprocess: cache file %s is corrupt", path)
	if len(b) < len(cacheMagic)+8 || string(b[:len(cacheMagic)]) != cacheMagic {
		return nil, corrupt
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, corrupt
	}
	off := len(cacheMagic)
	n := int(binary.LittleEndian.Uint32(body[off:]))
	off += 4
	if n > len(body)-off {
		return nil, corrupt
	}
	var m cacheMeta
	if err := json.Unmarshal(body[off:off+n], &m); err != nil {
		return nil, corrupt
	}
	off += n
	for _, s := range m.Shape {
		if s < 1 || s > 1<<15 {
			return nil, corrupt
		}
	}
	vox := m.Shape[1] * m.Shape[2] * m.Shape[3]
	nImage := m.Shape[0] * vox
	want := 4 * nImage
	if m.HasLabel {
		want += vox
	}
	if len(body)-off != want {
		return nil, corrupt
	}
	c := &Case{ID: m.ID, Shape: m.Shape, Geometry: m.Geometry}
	img := body[off : off+4*nImage]
	if hostLittleEndian && uintptr(unsafe.Pointer(unsafe.SliceData(img)))%4 == 0 {
		c.Image = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(img))), nImage)
	} else {
		c.Image = make([]float32, nImage)
		for i := range c.Image {
			c.Image[i] = math.Float32frombits(binary.LittleEndian.Uint32(img[4*i:]))
		}
	}
	if m.HasLabel {
		lab := off + 4*nImage
		c.Label = body[lab : lab+vox : lab+vox]
	}
	return c, nil
}

// hostLittleEndian reports whether float32s in memory have the cache
// file's byte order.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
