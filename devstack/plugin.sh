#!/bin/bash
#
# devstack plugin for nova-tenant-pin: installs the package on compute
# nodes, points nova-compute at TenantPinLibvirtDriver with the
# [tenant_pin] options from devstack/settings, confines host housekeeping
# once the services run, and restores it on unstack and clean.
#
# enable_plugin nova-tenant-pin <repository> [branch]

# Save trace setting
_XTRACE_NOVA_TENANT_PIN=$(set +o | grep xtrace)
set -o xtrace

function install_nova_tenant_pin {
    setup_develop $NOVA_TENANT_PIN_DIR
}

# The housekeeping CPUs: NOVA_TENANT_PIN_HOUSEKEEPING_CPUS, else the first
# core and its SMT siblings, so that the driver always has a housekeeping
# core and the tenants get every other one.
function nova_tenant_pin_housekeeping_cpus {
    if [[ -n "$NOVA_TENANT_PIN_HOUSEKEEPING_CPUS" ]]; then
        echo "$NOVA_TENANT_PIN_HOUSEKEEPING_CPUS"
        return
    fi
    local siblings=$NOVA_TENANT_PIN_SYSFS/devices/system/cpu/cpu0/topology/thread_siblings_list
    if [[ -r $siblings ]]; then
        cat $siblings
    else
        echo 0
    fi
}

function configure_nova_tenant_pin {
    iniset $NOVA_CPU_CONF DEFAULT compute_driver $NOVA_TENANT_PIN_COMPUTE_DRIVER
    # Placement offers no more vCPUs per thread than a tenant may use.
    iniset $NOVA_CPU_CONF DEFAULT cpu_allocation_ratio \
        $NOVA_TENANT_PIN_ALLOCATION_RATIO
    iniset $NOVA_CPU_CONF tenant_pin pin_mode $NOVA_TENANT_PIN_PIN_MODE
    iniset $NOVA_CPU_CONF tenant_pin tenant_cpu_allocation_ratio \
        $NOVA_TENANT_PIN_ALLOCATION_RATIO
    iniset $NOVA_CPU_CONF tenant_pin housekeeping_cpus \
        "$(nova_tenant_pin_housekeeping_cpus)"
}

# libvirt's own sched_core in qemu.conf (NOVA_TENANT_PIN_LIBVIRT_SCHED_CORE,
# "full" by default): every QEMU holds a core-scheduling cookie of its own
# from its start, so a guest arriving by live migration never runs beside
# another isolation key's thread before the driver gives it its key's cookie.
# Only where the kernel has core scheduling: libvirtd's QEMU driver refuses
# the setting on a kernel without it.
function configure_nova_tenant_pin_sched_core {
    local value=$NOVA_TENANT_PIN_LIBVIRT_SCHED_CORE
    if [[ -z "$value" || "$value" == "none" ]]; then
        return
    fi
    if ! $NOVA_TENANT_PIN_PYTHON -c 'import sys
from nova_tenant_pin import coresched
sys.exit(0 if coresched.support()[0] else 1)'; then
        echo "nova-tenant-pin: this kernel has no core scheduling; libvirt's sched_core left unset"
        return
    fi
    sudo sed -i -e '/^[[:space:]]*sched_core[[:space:]]*=/d' $NOVA_TENANT_PIN_QEMU_CONF
    echo "sched_core = \"$value\"" | sudo tee -a $NOVA_TENANT_PIN_QEMU_CONF >/dev/null
    restart_service $NOVA_TENANT_PIN_LIBVIRT_SERVICE
}

# TenantPinFilter after the filters devstack enabled, TenantPinWeigher after
# Nova's weighers, and the ratio the filter plans with, in nova.conf.
function configure_nova_tenant_pin_scheduler {
    local filters
    filters=$(iniget $NOVA_CONF filter_scheduler enabled_filters)
    filters=${filters:-ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter}
    if [[ ",$filters," != *",TenantPinFilter,"* ]]; then
        filters="$filters,TenantPinFilter"
    fi
    iniset_multiline $NOVA_CONF filter_scheduler available_filters \
        nova.scheduler.filters.all_filters \
        nova_tenant_pin.scheduler.filters.TenantPinFilter
    iniset $NOVA_CONF filter_scheduler enabled_filters "$filters"
    iniset $NOVA_CONF filter_scheduler weight_classes \
        nova.scheduler.weights.all_weighers,nova_tenant_pin.scheduler.weights.TenantPinWeigher
    iniset $NOVA_CONF tenant_pin tenant_cpu_allocation_ratio \
        $NOVA_TENANT_PIN_ALLOCATION_RATIO
}

function confine_nova_tenant_pin_housekeeping {
    if [[ "$(trueorfalse True NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING)" != "True" ]]; then
        return
    fi
    # The CPUs are the ones post-config wrote to nova-cpu.conf.
    sudo nova-tenant-pin --config-file $NOVA_CPU_CONF housekeeping apply
}

function release_nova_tenant_pin_housekeeping {
    if [[ "$(trueorfalse True NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING)" == "True" ]]; then
        # Restores what apply changed; a no-op when nothing was applied.
        sudo nova-tenant-pin --config-file $NOVA_CPU_CONF housekeeping release || true
    fi
}

if is_service_enabled n-sch && [[ "$1" == "stack" && "$2" == "post-config" ]] \
        && [[ "$(trueorfalse True NOVA_TENANT_PIN_SCHEDULER)" == "True" ]]; then
    echo_summary "Enabling the nova-tenant-pin scheduler filter and weigher"
    configure_nova_tenant_pin_scheduler
fi

if is_service_enabled n-cpu; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-tenant-pin"
        install_nova_tenant_pin
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-compute for nova-tenant-pin"
        configure_nova_tenant_pin
        configure_nova_tenant_pin_sched_core
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Confining host housekeeping for nova-tenant-pin"
        confine_nova_tenant_pin_housekeeping
    fi

    if [[ "$1" == "unstack" ]]; then
        release_nova_tenant_pin_housekeeping
    fi

    if [[ "$1" == "clean" ]]; then
        release_nova_tenant_pin_housekeeping
    fi
fi

# Restore xtrace
$_XTRACE_NOVA_TENANT_PIN
