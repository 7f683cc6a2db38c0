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

function configure_nova_tenant_pin {
    iniset $NOVA_CPU_CONF DEFAULT compute_driver $NOVA_TENANT_PIN_COMPUTE_DRIVER
    iniset $NOVA_CPU_CONF tenant_pin pin_mode $NOVA_TENANT_PIN_PIN_MODE
    iniset $NOVA_CPU_CONF tenant_pin tenant_cpu_allocation_ratio \
        $NOVA_TENANT_PIN_ALLOCATION_RATIO
    if [[ -n "$NOVA_TENANT_PIN_HOUSEKEEPING_CPUS" ]]; then
        iniset $NOVA_CPU_CONF tenant_pin housekeeping_cpus \
            $NOVA_TENANT_PIN_HOUSEKEEPING_CPUS
    fi
}

function confine_nova_tenant_pin_housekeeping {
    if [[ "$(trueorfalse True NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING)" != "True" ]]; then
        return
    fi
    if [[ -z "$NOVA_TENANT_PIN_HOUSEKEEPING_CPUS" ]]; then
        # The command needs the CPUs; without them nothing is confined.
        echo "WARNING: NOVA_TENANT_PIN_HOUSEKEEPING_CPUS is empty: host" \
            "housekeeping is not confined"
        return
    fi
    sudo nova-tenant-pin --config-file $NOVA_CPU_CONF housekeeping apply
}

function release_nova_tenant_pin_housekeeping {
    if [[ "$(trueorfalse True NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING)" == "True" ]]; then
        # Restores what apply changed; a no-op when nothing was applied.
        sudo nova-tenant-pin --config-file $NOVA_CPU_CONF housekeeping release || true
    fi
}

if is_service_enabled n-cpu; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-tenant-pin"
        install_nova_tenant_pin
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-compute for nova-tenant-pin"
        configure_nova_tenant_pin
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
