package cport

import (
	"errors"
	"fmt"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/engine/portable"
)

// An engineInfo names an engine of this build and opens it.
type engineInfo struct {
	name string
	open func(engine.Config) (engine.Engine, error)
}

// engines lists the engines of this build, best first: the kernel's own
// completion interface (osEngines, from the file of each system), then Go's
// net package, which runs everywhere.
var engines = append(osEngines[:len(osEngines):len(osEngines)], engineInfo{"portable", portable.Open})

// Backends returns the names of the backends this build has, best first.
// Not all of them may be able to run on this system: Open says.
func Backends() []string {
	names := make([]string, len(engines))
	for i, e := range engines {
		names[i] = e.name
	}
	return names
}

// engineConfig is what p's engine is handed.
func (p *Port) engineConfig() engine.Config {
	return engine.Config{
		Port:           (*portSide)(p),
		Logger:         p.log,
		Concurrency:    p.cfg.Concurrency,
		RecvBufferSize: p.cfg.RecvBufferSize,
		FlushDelay:     p.cfg.FlushDelay,
		Rings:          p.cfg.Rings,
		RingEntries:    p.cfg.RingEntries,
		RecvBuffers:    p.cfg.RecvBuffers,
		Faults:         p.cfg.faults,
	}
}

// openEngine opens the engine p's Config names, or the best available one
// for "auto", logging the choice and the reasons for passing over better
// ones. "auto" passes over an engine the system refuses (ErrUnavailable),
// not one that fails for another reason, such as a bad setting: that error
// is returned.
func openEngine(p *Port) (engine.Engine, string, error) {
	cfg := p.engineConfig()
	want := p.cfg.Backend
	if want != "auto" {
		for _, e := range engines {
			if e.name == want {
				eng, err := e.open(cfg)
				return eng, e.name, err
			}
		}
		return nil, "", fmt.Errorf("%w: unknown backend %q (this build has %v)", ErrUnavailable, want, Backends())
	}
	var skipped []error
	for _, e := range engines {
		eng, err := e.open(cfg)
		if err == nil {
			if len(skipped) > 0 {
				p.log.Info("cport: backend chosen", "backend", e.name, "passed_over", errors.Join(skipped...).Error())
			} else {
				p.log.Debug("cport: backend chosen", "backend", e.name)
			}
			return eng, e.name, nil
		}
		if !errors.Is(err, ErrUnavailable) {
			return nil, "", err // a configuration error, not the system's limits
		}
		skipped = append(skipped, err)
	}
	return nil, "", errors.Join(skipped...)
}
