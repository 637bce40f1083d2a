/** Snapshot create/apply/delete/rename and check --repair: a power cut anywhere leaves a valid image in the whole before or the whole after state. */
import { crashSuite } from './operation-suite.ts';

crashSuite('all-or-nothing', 'a power cut during a snapshot operation or a repair leaves a valid image, wholly before or wholly after');
