package iocp

import "golang.org/x/sys/windows"

// underWine reports whether the tests run under Wine rather than Windows:
// Wine's ntdll exports wine_get_version, Windows' does not. For a test
// that must accept a difference of Wine's, with a comment citing what
// Windows documents.
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
