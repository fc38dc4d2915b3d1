#!/bin/busybox sh
# /init of the qemu lane's guest (tests/hil-vm/lane.py puts it in the initramfs).
# Mounts what libgpiod and libserialport need, creates the gpio-sim chip the tests
# use, runs /bin/hiltest and powers off. Every line the host parses starts with
# HILVM, RESULT, MEASURE or HOSTPEER.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 1 > /proc/sys/kernel/printk   # kernel messages (taint warning) off the console

fail() { echo "HILVM SETUP-FAILED $*"; echo "HILVM END rc=99"; poweroff -f; }

insmod /lib/modules/configfs.ko || fail "insmod configfs"
mount -t configfs none /sys/kernel/config || fail "mount configfs"
mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
insmod /lib/modules/gpio-sim.ko || fail "insmod gpio-sim"

# One simulated chip, named like the module's pins. Offsets are fixed in guest/util.h.
C=/sys/kernel/config/gpio-sim/fb
mkdir $C $C/bank0 || fail "gpio-sim configfs"
echo 8 > $C/bank0/num_lines
echo fb-bench > $C/bank0/label
i=0
for name in PWRKEY RESET VBAT WDI STATUS LOSS RELAY SPARE; do
  mkdir $C/bank0/line$i && echo $name > $C/bank0/line$i/name
  i=$((i + 1))
done
echo 1 > $C/live || fail "gpio-sim live"
chip=$(cat $C/bank0/chip_name)
dev=$(cat $C/dev_name)
export HIL_CHIP=/dev/$chip HIL_SIM=/sys/devices/platform/$dev/$chip
[ -c $HIL_CHIP ] || fail "no $HIL_CHIP"

echo "HILVM INIT uptime=$(cut -d' ' -f1 /proc/uptime) chip=$HIL_CHIP sim=$HIL_SIM kernel=$(uname -r)"
/bin/hiltest
echo "HILVM END rc=$?"
poweroff -f
