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

# The station phase (lane.py writes /etc/station.env when it runs): the host's own
# Python and fotabench drive a real-kind slot (ttyS1 + this gpio-sim chip) through
# fotabench.Bench. The host's root, read-only over 9p, is the root of that run;
# tmpfs for what it writes; OUT (the host's station directory, read-write over 9p)
# receives the results at the same path.
station() {
  . /etc/station.env
  say() { echo "STATION $*"; }
  for m in $STATION_MODULES; do
    insmod /lib/modules/$m.ko || { say "SETUP-FAILED insmod $m"; return; }
  done
  ifconfig lo 127.0.0.1 up && ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up &&
    route add default gw 10.0.2.2 || { say "SETUP-FAILED network"; return; }
  R=/newroot
  mkdir -p $R
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot $R ||
    { say "SETUP-FAILED mount of the host root over 9p"; return; }
  mount -t proc proc $R/proc && mount -t sysfs sysfs $R/sys && mount -o bind /dev $R/dev &&
    mount -t tmpfs tmpfs $R/tmp && mount -t tmpfs tmpfs $R/run ||
    { say "SETUP-FAILED mounts in the new root"; return; }
  mkdir -p $R$OUT 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out $R$OUT ||
    { say "SETUP-FAILED mount of $OUT over 9p"; return; }
  sed "s|@CHIP@|$HIL_CHIP|g" $R$OUT/station.in.yaml > $R$OUT/station.yaml
  # Another program holds the second slot's PWRKEY line (bad input: error[gpio]).
  /bin/hilrelay hold $HIL_CHIP $HOLD_LINE $HOLD_CONSUMER > /run/holder.out &
  holder=$!
  /bin/hilrelay relay > /run/relay.out &
  relay=$!
  # Both up (bounded): the holder has its line, the relay has ttyS3 open.
  i=0
  until { grep -q "HOLDER " /run/holder.out && grep -q "RELAY " /run/relay.out; } 2>/dev/null ||
    [ $i -ge 100 ]; do
    sleep 0.1; i=$((i + 1))
  done
  cat /run/holder.out /run/relay.out
  say "READY uptime=$(cut -d' ' -f1 /proc/uptime)"
  # The host starts the virtual module on its READY and answers GO over ttyS3.
  i=0
  until [ -e /run/station.go ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
  [ -e /run/station.go ] || say "NO-GO from the host in 30 s"
  say "START uptime=$(cut -d' ' -f1 /proc/uptime)"
  chroot $R /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp LC_ALL=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 FOTABENCH_DB=/run/fotabench.sqlite TERM=dumb \
    $PY $WT/tests/hil-vm/guest/station_run.py $OUT/station.yaml $PKG $OUT
  say "DONE rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
  kill $relay $holder
  wait $relay $holder
  tail -n +2 /run/relay.out
  umount $R$OUT
}

echo "HILVM INIT uptime=$(cut -d' ' -f1 /proc/uptime) chip=$HIL_CHIP sim=$HIL_SIM kernel=$(uname -r)"
/bin/hiltest
rc=$?
[ -f /etc/station.env ] && station
echo "HILVM END rc=$rc"
poweroff -f
