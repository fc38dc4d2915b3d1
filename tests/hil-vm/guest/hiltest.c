/* The qemu lane's in-guest test program: runs every check once, in an order where
 * nothing the host sends can meet a port that is not open yet (port listing opens
 * every port with echo on, so it runs before the host exchange starts). */
#include "util.h"

#include <stdio.h>
#include <sys/utsname.h>

int main(void)
{
    struct utsname u;
    uname(&u);
    printf("HILVM START gpio=%s serial=%s kernel=%s chip=%s\n", gpio_backend(), serial_backend(),
           u.release, hil_chip());
    fflush(stdout);
    int64_t t0 = now_ns();

    check_serial_list();
    check_serial_loopback();
    check_serial_host();

    check_gpio_hold();
    check_gpio_pulse();
    check_gpio_edges();
    check_watchdog(100, 1000);
    check_watchdog(20, 300);
    check_lost_events();
    check_whole_path();

    measure("guest_checks_s", (double)(now_ns() - t0) / 1e9, "s");
    return 0;
}
