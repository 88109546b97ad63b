//go:build unix

package preprocess

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the file at path into memory, privately and writable (copy
// on write), or failing that reads it, and returns its bytes and a
// function that releases a mapping.
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, fmt.Errorf("preprocess: cache file %s is corrupt", path)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		// A host that will not map it (strict overcommit, say) still
		// reads it.
		b, err := os.ReadFile(path)
		return b, func() {}, err
	}
	return b, func() { syscall.Munmap(b) }, nil
}
