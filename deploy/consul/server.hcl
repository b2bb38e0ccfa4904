# A single-node Consul server for deploy/compose.yaml: UI on, HTTP API on every interface of the container.
# Production runs three or five servers (bootstrap_expect), with ACLs and TLS.
datacenter       = "dc1"
server           = true
bootstrap_expect = 1
data_dir         = "/consul/data"
client_addr      = "0.0.0.0"
bind_addr        = "0.0.0.0"
advertise_addr   = "{{ GetInterfaceIP \"eth0\" }}"
ui_config {
  enabled = true
}
log_level = "INFO"
