"""Host-side harness: boot a kernel under QEMU, drive it over the serial
console and QMP, and judge the console. Python 3 standard library only."""
