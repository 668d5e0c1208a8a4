package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ember-run/ember/engine/api/client"
	"io/fs"
	"os"
	"path/filepath"
)

// config is what `ember login` keeps between invocations.
type config struct {
	API    string `json:"api,omitempty"`
	APIKey string `json:"api_key,omitempty"`
}

// configPath is $EMBER_CONFIG, else $XDG_CONFIG_HOME/ember/config.json,
// else ~/.config/ember/config.json.
func configPath() (string, error) {
	if p := os.Getenv("EMBER_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config file: %w", err)
	}
	return filepath.Join(dir, "ember", "config.json"), nil
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig() (config, error) {
	p, err := configPath()
	if err != nil {
		return config{}, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return config{}, nil
	}
	if err != nil {
		return config{}, fmt.Errorf("config file: %w", err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return config{}, fmt.Errorf("config file %s: %w", p, err)
	}
	return c, nil
}

// saveConfig writes c to the config file, readable by its owner only.
func saveConfig(c config) (string, error) {
	p, err := configPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("config file: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("config file: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("config file: %w", err)
	}
	return p, nil
}

// reconnect rebuilds the client after a.apiKey changed.
func (a *app) reconnect() error {
	c, err := client.New(a.api, client.WithAPIKey(a.apiKey))
	if err != nil {
		return err
	}
	a.c = c
	return nil
}
