package main

import (
	"context"
)

var cmdConfigSample = &command{
	name:    "config sample",
	summary: "Print a sample configuration file with every key, its help and its default.",
	run: func(_ context.Context, inv *invocation) error {
		if err := inv.parseFlags(0, 0); err != nil {
			return err
		}
		return WriteSample(inv.stdout)
	},
}

var cmdConfigShow = &command{
	name:    "config show",
	summary: "Print the effective configuration (file, environment and flags applied; secrets hidden).",
	serve:   true,
	run: func(_ context.Context, inv *invocation) error {
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return cfg.WriteEffective(inv.stdout)
	},
}
