//go:build !unix

package preprocess

import "os"

// mapFile reads the file at path: hosts without mmap keep cases on the heap.
func mapFile(path string) ([]byte, func(), error) {
	b, err := os.ReadFile(path)
	return b, func() {}, err
}
