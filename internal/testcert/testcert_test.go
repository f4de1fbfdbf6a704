package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// TestNew checks that the certificate verifies against its pool for each
// of its names, and not for another.
func TestNew(t *testing.T) {
	cert, pool, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("the certificate verifies for example.com")
	}
}

// TestWritePEM checks that the files written load as a key pair.
func TestWritePEM(t *testing.T) {
	certFile, keyFile, err := WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(certFile); err != nil || len(b) == 0 {
		t.Fatalf("%s: %v", certFile, err)
	}
}
