// Command etcd runs the etcd server; Debian's 3.4 is too old for kube-apiserver 1.35.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
