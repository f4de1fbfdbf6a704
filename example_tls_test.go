package cport_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"time"

	"cport.dev/cport"
)

// A TLS echo server and its client, both on the port's engine: crypto/tls
// runs unchanged over the adapted listener (tls.NewListener) and over a
// connection dialed with DialNet (tls.Client).
func Example_tlsEcho() {
	cert, roots := selfSigned()
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	l, err := port.Listen("tcp", "127.0.0.1:0", 0)
	if err != nil {
		log.Fatal(err)
	}
	nl, err := l.NetListener()
	if err != nil {
		log.Fatal(err)
	}
	ln := tls.NewListener(nl, &tls.Config{Certificates: []tls.Certificate{cert}})
	defer ln.Close()
	go func() { // the echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) // decrypted in, encrypted out
			}()
		}
	}()

	nc, err := port.DialNet(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c := tls.Client(nc, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	defer c.Close()
	fmt.Fprintln(c, "hello over TLS")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(line)
	fmt.Println(c.ConnectionState().HandshakeComplete)
	// Output:
	// hello over TLS
	// true
}

// selfSigned returns a certificate for 127.0.0.1 signed by itself, and a
// pool that trusts it: what a test has, where a server has a real one.
func selfSigned() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}
