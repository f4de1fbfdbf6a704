//go:build race

package chat

func init() { raceEnabled = true }
