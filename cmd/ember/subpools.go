package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

// subpoolCmd manages the variable sub-pools of the warming pool.
func (a *app) subpoolCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "subpool", Short: "Variable sub-pools of the warming pool, reserved for a tenant (administrator)"}
	var p wire.SubPool
	create := &cobra.Command{
		Use:   "create NAME --tenant T --memory MB [--vcpu N] [--min-warm N] [--max N]",
		Short: "Create or replace a sub-pool: instances with these constraints, only for tenant T's functions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			out, err := a.c.PutSubPool(cmd.Context(), p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sub-pool %s for tenant %s: %d MB, %.2f vCPU, /tmp %d MB, %d pids, network %s, min warm %d, max %d (class %s)\n",
				out.Name, out.Tenant, out.MemoryMB, out.VCPU, out.TmpMB, out.Pids, out.Network, out.MinWarm, out.Max, out.Class)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&p.Tenant, "tenant", "", "the tenant whose functions run on its instances (required)")
	f.Int64Var(&p.MemoryMB, "memory", 0, "memory of each instance, MB: 128..10240 (required)")
	f.Float64Var(&p.VCPU, "vcpu", 0, "vCPUs of each instance: 0.1..64 (default: memory/1769, as on Lambda)")
	f.Int64Var(&p.TmpMB, "tmp-mb", 0, "size of each container's /tmp, MB: 16..10240 (default 64)")
	f.Int64Var(&p.Pids, "pids", 0, "most processes per instance: 16..32768 (default 256)")
	f.StringVar(&p.Network, "network", "", "egress (default) or none: no function on these instances reaches beyond its loopback")
	f.IntVar(&p.MinWarm, "min-warm", 0, "instances kept started across all hosts")
	f.IntVar(&p.Max, "max", 1, "most instances across all hosts: 1..1000")
	_ = create.MarkFlagRequired("tenant")
	_ = create.MarkFlagRequired("memory")
	cmd.AddCommand(create, &cobra.Command{
		Use: "list", Short: "List sub-pools (a tenant sees its own)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.c.ListSubPools(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "NAME\tTENANT\tMEMORY\tVCPU\tTMP\tPIDS\tNETWORK\tMIN WARM\tMAX", func(tw io.Writer) {
				for _, p := range l {
					fmt.Fprintf(tw, "%s\t%s\t%d MB\t%.2f\t%d MB\t%d\t%s\t%d\t%d\n",
						p.Name, p.Tenant, p.MemoryMB, p.VCPU, p.TmpMB, p.Pids, p.Network, p.MinWarm, p.Max)
				}
			})
		},
	}, &cobra.Command{
		Use: "delete NAME", Short: "Delete a sub-pool; its instances are retired as they idle", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.DeleteSubPool(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted sub-pool %s\n", args[0])
			return nil
		},
	})
	return cmd
}
