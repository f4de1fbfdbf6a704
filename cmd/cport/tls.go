package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
)

// TLS on the command line: cport serve's certificate (--tls-cert,
// --tls-key), and the clients' side (--tls, --tls-ca, --tls-insecure) of
// the commands that connect to a server, cport client and cport load.

// A dialFunc opens a connection to a server: TCP, or TLS over it.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

// dialTCP is the plain dialFunc.
func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// serverTLS loads the certificate and key of cport serve's --tls-cert and
// --tls-key: both or neither (nil: plain TCP).
func serverTLS(fs *flag.FlagSet, cert, key string) (*tls.Config, error) {
	switch {
	case cert == "" && key == "":
		return nil, nil
	case key == "":
		return nil, usageErr(fs, "--tls-cert: needs --tls-key, the certificate's private key")
	case cert == "":
		return nil, usageErr(fs, "--tls-key: needs --tls-cert, the certificate")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, usageErr(fs, "--tls-cert and --tls-key: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// tlsClientFlags are the TLS flags of a command that connects.
type tlsClientFlags struct {
	on       bool
	ca       string
	insecure bool
}

// register defines --tls, --tls-ca and --tls-insecure on fs.
func (t *tlsClientFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.on, "tls", false, "speak TLS to the server (cport serve --tls-cert), verifying its certificate against the system's CAs")
	fs.StringVar(&t.ca, "tls-ca", "", "verify the server's certificate against the CAs of this PEM `file` instead of the system's (implies --tls)")
	fs.BoolVar(&t.insecure, "tls-insecure", false, "do not verify the server's certificate: for a test server's self-signed one only (implies --tls)")
}

// config returns the TLS configuration the flags ask for, nil for plain
// TCP. A bad CA file is a usage error naming the flag.
func (t *tlsClientFlags) config(fs *flag.FlagSet) (*tls.Config, error) {
	if !t.on && t.ca == "" && !t.insecure {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: t.insecure, MinVersion: tls.VersionTLS12}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, usageErr(fs, "--tls-ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageErr(fs, "--tls-ca: no PEM certificate in %s", t.ca)
		}
	}
	return cfg, nil
}

// dialTLS returns the dialFunc of cfg: TCP for nil, else TCP and a TLS
// handshake, within ctx, verifying the server's certificate for the host
// of the address it dials.
func dialTLS(cfg *tls.Config) dialFunc {
	if cfg == nil {
		return dialTCP
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: serverName(cfg, addr)}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("TLS to %s: %w", addr, err)
		}
		return c, nil
	}
}

// serverName returns cfg with ServerName the host of addr, if unset.
func serverName(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cfg
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}
