/** The parts of ECharts Cowbell draws with, registered once: bars on a canvas, with grid, tooltip and legend. */
import { BarChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { use } from 'echarts/core';
import { CanvasRenderer } from 'echarts/renderers';

use([CanvasRenderer, BarChart, GridComponent, TooltipComponent, LegendComponent]);
